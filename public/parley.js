/* parley's additions to Chainlit's stock web chat (.chainlit/config.toml: custom_js). Plain script, no build. */
(function () {
  "use strict";

  /* -- 1. The login page: no error before the user has tried ------------------------------------------
     The app signs the local user in by header (local mode). With users, that attempt is refused, and Chainlit
     shows the refusal as "Unauthorized: credentialssignin" before anyone typed a thing. A refused header
     sign-in is not the user's failure: it stays silent (its promise never settles, so nothing is shown). */
  var origFetch = window.fetch.bind(window);
  window.fetch = function (input, init) {
    var url = typeof input === "string" ? input : input && input.url ? input.url : String(input);
    var answer = origFetch(input, init);
    if (!/\/auth\/header(\?|$)/.test(url)) return answer;
    return answer.then(function (resp) {
      return resp.status === 401 || resp.status === 403 ? new Promise(function () {}) : resp;
    });
  };

  /* -- 2. Long messages: collapsed, with "Show more" -------------------------------------------------- */
  var TALL_PX = 900; // taller than this: collapsed (see .prose[data-parley-long] in parley.css)
  var MORE = "Show more";
  var LESS = "Show less";

  function button(prose) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "parley-more";
    b.textContent = MORE;
    b.setAttribute("aria-expanded", "false");
    b.addEventListener("click", function () {
      var open = prose.getAttribute("data-parley-long") === "collapsed";
      prose.setAttribute("data-parley-long", open ? "open" : "collapsed");
      b.textContent = open ? LESS : MORE;
      b.setAttribute("aria-expanded", open ? "true" : "false");
      if (!open) prose.scrollIntoView({ block: "nearest" });
    });
    return b;
  }

  function scan() {
    var proses = document.querySelectorAll(".step .message-content .prose");
    for (var i = 0; i < proses.length; i++) {
      var prose = proses[i];
      if (prose.hasAttribute("data-parley-long")) continue;
      if (prose.scrollHeight <= TALL_PX) continue;
      prose.setAttribute("data-parley-long", "collapsed");
      prose.insertAdjacentElement("afterend", button(prose));
    }
    // A button whose message was redrawn without it (React replaced the text): gone with it.
    var buttons = document.querySelectorAll("button.parley-more");
    for (var j = 0; j < buttons.length; j++) {
      var prev = buttons[j].previousElementSibling;
      if (!prev || !prev.hasAttribute("data-parley-long")) buttons[j].remove();
    }
  }

  var pending = false;
  function later() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () {
      pending = false;
      scan();
    });
  }

  function watch() {
    new MutationObserver(later).observe(document.body, { childList: true, subtree: true, characterData: true });
    later();
  }
  if (document.body) watch();
  else document.addEventListener("DOMContentLoaded", watch);
})();
