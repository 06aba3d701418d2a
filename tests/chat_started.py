"""Knowing when a browser tab's chat session has started, for every browser test.

on_chat_start and on_chat_resume set the composer's commands, so each chat session a page starts gets a
`set_commands` Socket.IO event on its connection (a run sets them again later: only a connection's first one
counts). A page that takes its new session over on a second connection as the chat starts (Chainlit's page does
on a team switch) gets that start again there (parley/web/_chainlit_restore.py), so the page's live connection
always hears it. The page counts them itself: an init script reads what its WebSocket and long-polling requests
receive, so no start is missed while the test is busy elsewhere, and waiting is Playwright's `wait_for_function`,
which has a time limit. A new document counts from zero; within one document, `expect_new()` marks the
connections opened so far as old.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

WAIT_MS = 30_000
"""How long a chat session may take to start (a loaded machine has taken more than 15 s)."""
EVALUATE_MS = 10_000

COUNTER = r"""
(() => {
  if (window.__parleyChats) return;
  // One entry per Engine.IO connection, in the order the page opened them: its id once known, and whether
  // its chat session started. `mark` is where expect_new() drew the line (absent: this document's first line).
  const chats = (window.__parleyChats = { connections: [], mark: 0, actions: [] });
  const sidOf = (url) => {
    try { return new URL(String(url), location.href).searchParams.get('sid'); } catch (e) { return null; }
  };
  const connection = (sid) => {
    let found = sid ? chats.connections.find((c) => c.sid === sid) : undefined;
    if (!found) chats.connections.push((found = { sid, started: false, answered: false, closed: false, events: [] }));
    return found;
  };
  // Engine.IO packets: one per WebSocket message, several (separated by \x1e) per long-polling answer.
  const read = (conn, data) => {
    if (typeof data !== 'string') return;
    for (const packet of data.split('\x1e')) {
      if (packet.startsWith('0{')) {
        try { conn.sid = JSON.parse(packet.slice(1)).sid; } catch (e) { /* not an open packet */ }
      } else if (packet.startsWith('42["set_commands"')) {
        conn.started = true;
      } else if (packet.startsWith('42["clear_call_fn"')) {
        conn.answered = true;  // the last of the server's answers to a connection, before a start
      }
      if (conn.events.length < 80) conn.events.push(packet.slice(0, 40));  // for a failing test's message
      // The buttons each connection brought and took away (Chainlit's page keeps them across its connections).
      if (chats.actions.length < 200 && /^42\["(remove_)?action"/.test(packet)) {
        try {
          const [ev, a] = JSON.parse(packet.slice(2));
          chats.actions.push([chats.connections.indexOf(conn), ev, a.id, a.label || '']);
        } catch (e) { /* not JSON */ }
      }
    }
  };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      const conn = connection(sidOf(args[0]));  // an upgrade carries its connection's id
      this.addEventListener('message', (e) => read(conn, e.data));
      this.addEventListener('close', () => { conn.closed = true; });
    }
  };
  const open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    if (String(url).includes('transport=polling') && String(method).toUpperCase() === 'GET') {
      const conn = connection(sidOf(url));  // no id yet: the handshake of a new connection
      // Before Engine.IO's own handler (set after open), which opens the upgrade's WebSocket at once.
      this.addEventListener('readystatechange', () => {
        if (this.readyState !== 4) return;
        try { read(conn, this.responseText); } catch (e) { /* not text */ }
      });
    }
    return open.call(this, method, url, ...rest);
  };
})();
"""

_MARK = """() => {
  const chats = window.__parleyChats;
  if (chats) chats.mark = chats.connections.length;
  return true;
}"""
# Both throw when the document has no counter (it loaded before the ChatStarts was made): a clear error, at once.
_STARTED = """() => {
  const chats = window.__parleyChats;
  if (!chats) throw new Error('this page loaded before its ChatStarts was made: make it before the first goto');
  return chats.connections.slice(chats.mark).some((c) => c.started);
}"""
_LIVE_STARTED = """() => {
  const chats = window.__parleyChats;
  if (!chats) throw new Error('this page loaded before its ChatStarts was made: make it before the first goto');
  const last = chats.connections[chats.connections.length - 1];
  return Boolean(last && last.started && !last.closed);
}"""
_CONNECTED = """() => {
  const chats = window.__parleyChats;
  if (!chats) throw new Error('this page loaded before its ChatStarts was made: make it before the first goto');
  const last = chats.connections[chats.connections.length - 1];
  return chats.connections.length > chats.mark && last.answered && !last.closed;
}"""


class ChatStarts:
    """The chat sessions `page` starts. Make it before the page's first navigation.

    `wait()` returns once a connection opened since the last line (a new document, `expect_new()`, or the
    previous `wait()`) has started its chat session, and the composer takes text. Draw the line with
    `expect_new()` before an action that starts a chat in the same document (a team switch, a thread opened
    from the sidebar, the login form), once the page is settled: its own chat started (`wait()`) or, for a team
    that cannot start, its connection open (`wait_connected()`)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        page.add_init_script(COUNTER)

    def expect_new(self) -> None:
        """Connections opened so far are old: `wait()` waits for the chat of one opened after now."""
        self.page.wait_for_function(_MARK, timeout=WAIT_MS)

    def wait(self, timeout_ms: float = WAIT_MS) -> None:
        """Wait until the chat session of a connection opened since the line has started."""
        from playwright.sync_api import expect  # only browser tests import this module; they skip without it

        try:
            self.page.wait_for_function(_STARTED, timeout=timeout_ms, polling=50)
        except Exception as exc:
            raise AssertionError(f"the chat session never started ({exc}); {self._connections()}") from exc
        self.expect_new()  # that start is used up: the next wait() waits for another
        try:
            expect(self.page.locator("#chat-input")).to_be_enabled(timeout=timeout_ms)
        except AssertionError as exc:
            raise AssertionError(
                f"the chat started, but its composer never took text ({exc}); {self._connections()}"
            ) from exc

    def wait_live(self, timeout_ms: float = WAIT_MS) -> None:
        """Wait until the page's latest connection is open and its chat session's start reached it (what the page
        shows of a start, the model picker and the commands, comes with it)."""
        try:
            self.page.wait_for_function(_LIVE_STARTED, timeout=timeout_ms, polling=50)
        except Exception as exc:
            raise AssertionError(
                f"the page's live connection never heard its chat start ({exc}); {self._connections()}"
            ) from exc

    def wait_connected(self, timeout_ms: float = WAIT_MS) -> None:
        """Wait until the page's latest connection, opened since the line, is open and answered (its chat need
        not start): a page loading opens one and may replace it at once (Chainlit sets its team and reconnects)."""
        try:
            self.page.wait_for_function(_CONNECTED, timeout=timeout_ms, polling=50)
        except Exception as exc:
            raise AssertionError(
                f"the page opened no connection to the chat ({exc}); {self._connections()}"
            ) from exc

    def connections(self) -> str:
        """The page's connections, what each was sent, and the buttons each brought: for a failing test's message."""
        return self._connections()

    def _connections(self) -> str:
        try:
            seen = evaluate(self.page, "() => window.__parleyChats", timeout_ms=2_000)
            return f"the page's connections: {seen}"
        except Exception as exc:  # the page is gone or not answering: the first error says enough
            return f"the page's connections are unknown ({type(exc).__name__})"


def evaluate(target: Page | Locator, fn: str, arg: Any = None, *, timeout_ms: float = EVALUATE_MS) -> Any:
    """`fn(arg)` run in the page, or `fn(element, arg)` for a locator's element, and what it returns (JSON).

    Through `wait_for_function`, which has a time limit: Playwright's `evaluate` has none once it has the element,
    so a page that stopped answering (or a dialog left open) would hold the whole run."""
    from playwright.sync_api import Locator

    if isinstance(target, Locator):
        element = target.element_handle(timeout=timeout_ms)
        page, call, args = target.page, f"([el, arg]) => [({fn})(el, arg)]", [element, arg]
    else:
        element, page, call, args = None, target, f"arg => [({fn})(arg)]", arg
    handle = page.wait_for_function(call, arg=args, timeout=timeout_ms)
    try:
        return handle.json_value()[0]
    finally:
        handle.dispose()
        if element is not None:
            element.dispose()


STARTS: dict[int, ChatStarts] = {}
"""The chat starts of every tab a test opened with `person()` (tests/reliability/conftest.py), by the tab's id()."""


def send_message(page: Page, text: str) -> None:
    """Type `text` in the composer and send it with Enter, as a person does, once the composer takes it.

    The first screen of a new chat swaps its composer for the conversation's as the chat starts: a key pressed in
    between is lost and the text stays (sending clears it at once). A person who sees their text still there
    presses the send button: so does this."""
    from playwright.sync_api import expect  # only browser tests import this module; they skip without it

    box = page.locator("#chat-input")
    box.fill(text)
    # A page that just switched teams is still starting its new chat (a task runs): it takes no message yet.
    expect(page.locator("#chat-submit")).to_be_enabled()
    box.press("Enter")
    try:
        expect(box).to_have_value("", timeout=5_000)  # the composer took it
    except AssertionError:
        page.locator("#chat-submit").click()
        expect(box).to_have_value("")
