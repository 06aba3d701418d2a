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
  /* -- 3. Deep links: /thread/<id> opened in a fresh browser ------------------------------------------
     Chainlit sends a page that is not signed in to /login, and the login page sends the user to "/" once signed
     in (by password, or by header in local mode): the thread asked for is lost. The login page knows where it was
     sent from (document.referrer): remember that thread until the browser is on it, and go there whenever the
     sign-in has moved on to another page (a request refused before the sign-in may send the page to /login once
     more: the thread is still remembered then). */
  var DEEP = "parley.deeplink";
  var THREAD = /\/thread\/[0-9a-f-]{36}$/;
  var LOGIN = /\/login$/;
  function stashed() {
    try {
      return sessionStorage.getItem(DEEP);
    } catch (e) {
      return null; /* no storage (private mode): the link opens a new chat, as before */
    }
  }
  function stash(path) {
    try {
      if (path) sessionStorage.setItem(DEEP, path);
      else sessionStorage.removeItem(DEEP);
    } catch (e) {
      /* as above */
    }
  }
  if (LOGIN.test(location.pathname) && document.referrer) {
    try {
      var from = new URL(document.referrer);
      if (from.origin === location.origin && THREAD.test(from.pathname)) stash(from.pathname);
    } catch (e) {
      /* not a URL: nothing to remember */
    }
  } else if (THREAD.test(location.pathname) && stashed() === location.pathname) {
    stash(null); /* arrived */
  }
  function arrived() {
    var want = stashed();
    if (want && !LOGIN.test(location.pathname) && !THREAD.test(location.pathname)) location.replace(want);
  }
  ["pushState", "replaceState"].forEach(function (name) {
    var original = history[name];
    history[name] = function () {
      var done = original.apply(this, arguments);
      arrived();
      return done;
    };
  });
  window.addEventListener("popstate", arrived);
})();
