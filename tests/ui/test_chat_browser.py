"""The web chat in a real browser: Chromium drives `parley ui` the way a person would.

Each test checks what is on the page, and then what the server really recorded in the parley
store (events, audit log), so a page that merely looks right is not enough.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from chat_started import ChatStarts, evaluate, send_message
from ui.conftest import wait_until

from parley.catalog import discover_teams
from parley.web._format import SYSTEM

_MISSING = None
try:
    from playwright.sync_api import Locator, Page, expect
except ImportError:
    _MISSING = "Python Playwright is not installed in this environment (pip install playwright)"
if _MISSING is None and not Path("/usr/bin/chromium").is_file():
    _MISSING = (
        "/usr/bin/chromium not found: install Debian's chromium package (browsers are never downloaded)"
    )
if _MISSING:
    pytest.skip(_MISSING, allow_module_level=True)
expect.set_options(timeout=30_000)  # a whole scripted run fits; the default 5 s is tight on a busy machine

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
TEAMS = sorted(e.name for e in discover_teams() if e.spec is not None)  # every shipped team is offered
AGENT_STEP = '.step[data-step-type="assistant_message"]'
USER_STEP = '.step[data-step-type="user_message"]'
TURN = re.compile(r"· turn \d+")
CHART = "tokens-per-speaker.svg"
# Servers the tests share (one per script, each with its own data folder); they boot in parallel.
SHARED_SERVERS = (
    "support.yaml",
    "interject.yaml",
    "studio.yaml",
    "studio-slow-writer.yaml",
    "exhausted.yaml",
)


class Chat:
    """One browser tab on the web chat, with the few gestures a person uses."""

    def __init__(self, page: Page, server) -> None:
        self.page = page
        self.server = server
        self.starts = ChatStarts(page)
        """The chat sessions the page starts: each page load, team switch or reopened thread starts one."""

    # -- getting there ------------------------------------------------------------------------

    def open(self, path: str = "/", *, ready: bool = True) -> Chat:
        """Load the page; `ready=False` for a team that cannot start here (it waits for the connection only)."""
        self.page.goto(self.server.url + path)
        return self.ready() if ready else self.connected()

    def reload(self) -> Chat:
        self.page.reload()
        return self.ready()

    def open_thread(self, tid: str) -> Chat:
        """Reopen a conversation from the sidebar."""
        self.starts.expect_new()
        self.page.locator(f"#thread-{tid} a").click()
        self.page.wait_for_url(f"**/thread/{tid}")
        self.ready()
        # The reopened page may connect more than once in a row: what is sent on a connection it then drops is lost.
        self.starts.wait_live()
        return self

    def ready(self) -> Chat:
        """Wait until the page's chat session has started (see tests/chat_started.py)."""
        self.starts.wait()
        return self

    def connected(self) -> Chat:
        """Wait until the page has its connection (its chat session may not start: a team that cannot)."""
        self.starts.wait_connected()
        return self

    def login(self, user: str, password: str) -> Chat:
        self.page.goto(self.server.url + "/")
        self.page.locator("#email").fill(user)
        self.page.locator("#password").fill(password)
        self.starts.expect_new()
        self.page.locator('button[type="submit"]').click()
        return self.ready()

    def pick_team(self, name: str, *, listed: list[str] | None = None) -> Chat:
        """Choose a team in the chat-profile dropdown (optionally checking every team it lists)."""
        self.starts.expect_new()  # the page has its own connection (see open): the switch opens the next one
        self.page.locator("#chat-profiles").click()
        if listed is not None:
            expect(self.page.get_by_role("option")).to_have_text(listed)
        # An option's name is its icon's and its text's: pick it by its text.
        self.page.get_by_role("option").filter(has=self.page.get_by_text(name, exact=True)).click()
        expect(self.page.locator("#chat-profiles")).to_have_text(name)
        return self.ready()

    # -- talking ------------------------------------------------------------------------------

    def send(self, text: str) -> None:
        send_message(self.page, text)

    def command(self, name: str, text: str = "") -> None:
        """Select a composer command button, then send."""
        self.page.locator(f"#command-{name}").click()
        if text:
            self.page.locator("#chat-input").fill(text)
        self.page.locator("#chat-submit").click()

    def stop(self) -> None:
        """The run's Stop button, one click. The controls move below each new message (the old ones go, new ones
        come): a person clicks the one that stays, so the click waits until they are the page's last message."""
        expect(self.page.locator(AGENT_STEP).last).to_contain_text("The team is working")
        self.controls().last.get_by_role("button", name="Stop").click()

    def controls(self) -> Locator:
        """The live run's controls (a message kept last on the page while the run goes on)."""
        return self.note("The team is working")

    # -- reading ------------------------------------------------------------------------------

    def agent(self, name: str, turn: int) -> Locator:
        """An agent's message, by the header every agent message starts with."""
        return self.page.locator(AGENT_STEP).filter(has_text=f"{name} · turn {turn}")

    def turns(self) -> Locator:
        return self.page.locator(AGENT_STEP).filter(has_text=TURN)

    def note(self, text: str | re.Pattern[str]) -> Locator:
        return self.page.locator(AGENT_STEP).filter(has_text=text)

    def tool_output(self, name: str, nth: int = 0) -> Locator:
        """The output of the `nth` call of tool `name`, its step opened (it shows closed)."""
        named = self.page.locator(f'[id="step-{name}"]')
        step = self.page.locator('.step[data-step-type="tool"]').filter(has=named).nth(nth)
        head = step.locator(f'[id="step-{name}"]')
        if head.get_attribute("aria-expanded") != "true":
            head.click()
        return step.locator('[role="region"]')

    def user_messages(self) -> Locator:
        return self.page.locator(USER_STEP)

    def thread_id(self) -> str:
        self.page.wait_for_url(re.compile(r"/thread/[0-9a-f-]{36}$"))
        return self.page.url.rsplit("/", 1)[1]


def of_type(events: list[dict], *types: str) -> list[dict]:
    return [e for e in events if e["type"] in types]


def result_of(server, tid: str) -> dict:
    """Wait until the thread's last run has stored its result; return that result event."""
    return wait_until(
        lambda: next((e for e in reversed(server.events(tid)) if e["type"] == "result"), None),
        "the run's result event in the store",
    )


def stays_true(check, what: str, seconds: float) -> None:
    """Keep checking for `seconds` that nothing happens that should not (a negative proof needs time)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.25)
    assert check(), what


# -- 1. teams are chat profiles ---------------------------------------------------------------------


def test_pick_a_team_and_watch_two_agents_talk(servers, new_page):
    server = servers("support.yaml")
    # The first team (content-studio) cannot start on this script, which is for customer-support.
    chat = Chat(new_page(), server).open(ready=False)
    page = chat.page

    chat.pick_team("customer-support", listed=TEAMS)

    # The team's starters are offered; click the first one, as a person would.
    page.get_by_role("button", name="Order 1042 arrived broken, I want my money back").click()
    expect(chat.user_messages().filter(has_text="Order 1042 arrived broken")).to_have_count(1)
    triage = chat.agent("triage", 1)
    expect(triage).to_contain_text("cracked monitor screen")
    expect(triage.locator('img[alt="Avatar for triage"]')).to_have_count(1)
    billing = chat.agent("billing", 2)
    expect(billing).to_contain_text("its result is in the step above")  # said once, in the tool's step
    expect(billing.locator('img[alt="Avatar for billing"]')).to_have_count(1)
    page.locator(
        "#step-lookup_order"
    ).click()  # open the tool's step: lookup_order really ran on the sample data
    expect(page.get_by_text("Order 1042 on 2025-11-09")).to_be_visible()
    expect(chat.note("wants to call issue_refund")).to_be_visible()

    tid = chat.thread_id()
    (row,) = [t for t in server.threads("local") if t.id == tid]
    assert row.team == "customer-support"

    # Stopping while a tool waits for approval ends the run and takes the buttons away.
    chat.stop()
    expect(chat.note("Run ended")).to_contain_text("Stopped by you at turn 3")  # billing's turn, waiting
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    assert result_of(server, tid)["stop_reason"] == "stopped"


# -- 2. interjecting while an agent writes, and the screenshot for the docs ---------------------------


def test_interjection_joins_after_the_current_turn(servers, new_page, tmp_path):
    server = servers("interject.yaml")
    chat = Chat(new_page(), server).open()
    chat.send("Write a short note on Q3 churn")

    researcher = chat.agent("researcher", 1)
    expect(researcher).to_be_visible()  # streaming: the header arrives with the first chunk
    expect(chat.agent("writer", 2)).to_have_count(0)
    expect(chat.page.locator("#chat-input")).to_be_enabled()  # the composer stays usable while agents work
    chat.send("focus on EMEA")

    expect(chat.note("↳ your message joined the conversation after turn 1")).to_contain_text("focus on EMEA")
    expect(researcher).to_contain_text("biggest jump was among small accounts")  # its turn was not cut short
    expect(researcher).not_to_contain_text("cut short")
    expect(chat.agent("writer", 2)).to_contain_text("Noted: EMEA focus")

    # While the editor is still writing: the picture in the README (agents, meter, Stop/Interrupt).
    editor = chat.agent("editor", 3)
    expect(editor).to_be_visible()
    expect(chat.page.locator("body")).to_contain_text(re.compile(r"Meter.*\d prompt \+", re.S))  # in view
    # Chainlit scrolls the latest user message to the top; show the run from the task down to the
    # message being written, which stays in view.
    evaluate(chat.user_messages().first, "step => step.scrollIntoView({block: 'start'})")
    evaluate(editor, "step => step.scrollIntoView({block: 'nearest'})")
    expect(editor).to_be_in_viewport()
    # The README's picture is refreshed on request only: a test run must not change tracked files.
    shot = SCREENSHOT if os.environ.get("PARLEY_UPDATE_SCREENSHOT") == "1" else tmp_path / "screenshot.png"
    chat.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    expect(chat.note("Run ended")).to_contain_text("editor said APPROVE")
    tid = chat.thread_id()
    result_of(server, tid)
    events = server.events(tid)
    said = [e for e in of_type(events, "human_message") if e["mode"] == "say"]
    assert [e["content"] for e in said] == ["focus on EMEA"]
    messages = of_type(events, "message")
    assert [(m["source"], m["turn"]) for m in messages] == [("researcher", 1), ("writer", 2), ("editor", 3)]
    assert messages[0]["seq"] < said[0]["seq"] < messages[1]["seq"], (
        "the interjection must reach the team before the writer's turn"
    )


# -- 3. stop, then carry on in the same conversation --------------------------------------------------


def test_stop_ends_the_run_now_and_the_conversation_continues(servers, new_page):
    server = servers("studio-slow-writer.yaml")  # the writer's first reply holds until Stop
    chat = Chat(new_page(), server).open()
    chat.send("Write a 150-word post on customer churn")

    expect(chat.agent("researcher", 1)).to_contain_text("five to seven times")
    writer = chat.agent("writer", 2)
    expect(writer).to_be_visible()  # the writer is streaming its turn
    chat.stop()

    expect(chat.note("Run ended")).to_contain_text("Stopped by you at turn 2")
    expect(writer).to_contain_text("cut short: stopped")
    tid = chat.thread_id()
    result = result_of(server, tid)
    assert result["stop_reason"] == "stopped"

    # Three turn-lengths (each reply streams for 0.5 s) later, nobody has spoken: not on the page, not in the store.
    shown = chat.turns().count()

    def quiet() -> bool:
        stored_after = [e["type"] for e in server.events(tid) if e["seq"] > result["seq"]]
        return not stored_after and chat.turns().count() == shown  # no usage, no message, nothing

    stays_true(quiet, "an agent spoke or a model was called after the stop", 1.5)

    chat.send("Carry on with the draft, please")
    expect(chat.user_messages().filter(has_text="Carry on with the draft")).to_have_count(1)
    expect(chat.turns().filter(has_text="Draft two: track churn monthly")).to_be_visible()
    expect(chat.note("Run ended").last).to_contain_text("editor said APPROVE")
    events = server.events(tid)
    assert len(of_type(events, "result")) == 2
    assert [m["source"] for m in of_type(events, "message")] == ["researcher", "writer", "editor"]


def test_interrupt_cuts_the_turn_short_and_the_agent_redoes_it(servers, new_page):
    server = servers("studio-slow-writer.yaml")  # the writer's first reply holds until the Interrupt
    chat = Chat(new_page(), server).open()
    chat.send("Write a 150-word post on customer churn")
    expect(chat.agent("researcher", 1)).to_contain_text("five to seven times")
    writer = chat.agent("writer", 2)
    expect(writer).to_be_visible()
    chat.command("Interrupt", "Make it a checklist")

    expect(chat.note("↳ your message interrupted the turn")).to_contain_text("Make it a checklist")
    expect(writer.filter(has_text="cut short: interrupt")).to_have_count(1)
    expect(writer.filter(has_text="Draft two: track churn monthly")).to_have_count(1)  # the writer's new turn
    expect(chat.note("Run ended")).to_contain_text("editor said APPROVE")  # one run, not stopped

    tid = chat.thread_id()
    result_of(server, tid)
    events = server.events(tid)
    (cut,) = of_type(events, "turn_abandoned")
    assert (cut["source"], cut["reason"]) == ("writer", "interrupt")
    (said,) = [e for e in of_type(events, "human_message") if e["mode"] == "interrupt"]
    assert said["content"] == "Make it a checklist"
    writer_msg = next(e for e in of_type(events, "message") if e["source"] == "writer")
    assert cut["seq"] < said["seq"] < writer_msg["seq"]
    assert len(of_type(events, "result")) == 1


# -- 4. approve one refund, deny another with a reason ------------------------------------------------


def test_approve_and_deny_a_tool_call(servers, new_page):
    server = servers("support.yaml")
    chat = Chat(new_page(), server).open(ready=False).pick_team("customer-support")
    chat.send("Order 1042 arrived broken, I want my money back")

    first = chat.note("wants to call issue_refund").filter(has_text="395.12")
    expect(first.get_by_role("button", name="Approve")).to_be_visible()
    first.get_by_role("button", name="Approve").click()
    expect(chat.note("issue_refund approved by local")).to_be_visible()
    expect(chat.agent("billing", 3)).to_contain_text("its result is in the step above")
    expect(chat.tool_output("issue_refund", 0)).to_contain_text("issued: 395.12 on order 1042")

    second = chat.note("wants to call issue_refund").filter(has_text="166.32")
    expect(second.get_by_role("button", name="Deny…")).to_be_visible()
    second.get_by_role("button", name="Deny…").click()
    expect(chat.note("Why deny it?")).to_be_visible()
    reason = "the dock works, no goodwill refunds without a manager"
    chat.send(reason)
    expect(chat.note(f"issue_refund denied by local: {reason}")).to_be_visible()
    expect(chat.tool_output("issue_refund", 1)).to_contain_text(
        reason
    )  # the agent saw it as the tool's error
    expect(chat.note("Run ended")).to_contain_text("triage said RESOLVED")
    expect(chat.page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(chat.page.get_by_role("button", name="Deny…")).to_have_count(0)

    tid = chat.thread_id()
    result_of(server, tid)
    decisions = [
        (a.actor, a.action, a.detail.get("reason", ""))
        for a in server.audit(tid)
        if a.action in ("approve", "deny")
    ]
    assert decisions == [("local", "approve", ""), ("local", "deny", reason)]
    events = server.events(tid)
    results = [e for e in of_type(events, "tool_result") if e["name"] == "issue_refund"]
    assert len(results) == 2
    assert not results[0]["is_error"] and "Refund" in results[0]["content"]
    assert results[1]["is_error"] and reason in results[1]["content"]


# -- 5. reload, and reopen the conversation from the sidebar ------------------------------------------


def test_reload_and_reopen_from_the_sidebar(servers, new_page):
    server = servers("studio.yaml")
    chat = Chat(new_page(), server).open()
    task = "Write about churn for the reopen test"
    chat.send(task)
    expect(chat.note("Run ended")).to_contain_text("editor said APPROVE")
    chart = chat.note("Run ended").locator(f'img[alt="{CHART}"]')
    expect(chart).to_be_visible()  # the tokens-per-speaker chart under the note
    chat.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=chart.element_handle())
    tid = chat.thread_id()

    def shows_the_conversation() -> None:
        expect(chat.user_messages().filter(has_text=task)).to_have_count(1)
        expect(chat.agent("researcher", 1)).to_contain_text("five to seven times")
        expect(chat.agent("writer", 2)).to_contain_text("Draft one")
        expect(chat.agent("editor", 3)).to_contain_text("APPROVE")
        expect(chat.agent("editor", 3).locator('img[alt="Avatar for editor"]')).to_have_count(1)
        expect(chat.note("Run ended")).to_be_visible()

    chat.reload()
    shows_the_conversation()

    chat.open("/")  # a new, empty chat ...
    expect(chat.turns()).to_have_count(0)
    chat.open_thread(tid)  # ... and back from the sidebar
    shows_the_conversation()


# -- 8. a run that fails says why, in the conversation ------------------------------------------------


def test_a_run_error_is_shown_readably(servers, new_page):
    server = servers("exhausted.yaml")
    chat = Chat(new_page(), server).open()
    chat.send("Write about churn until the script runs out")
    expect(chat.agent("researcher", 1)).to_contain_text("the only reply this script has")
    error = chat.note(re.compile(r"Error in \w+: ScriptExhaustedError"))
    expect(error).to_contain_text("writer ran past the end of its script")
    expect(error.locator(f'img[alt="Avatar for {SYSTEM}"]')).to_have_count(1)
    expect(chat.note("Run ended")).to_contain_text("Stopped by an error: ScriptExhaustedError")
    tid = chat.thread_id()
    assert result_of(server, tid)["stop_reason"] == "error"
    (stored,) = of_type(server.events(tid), "error")
    assert stored["error_type"] == "ScriptExhaustedError"


# -- a conversation left with a live run is re-attached, not forked, when it is reopened ---------------------------


def no_overlapping_runs(events: list[dict]) -> None:
    running = False
    for e in events:
        if e["type"] == "run_started":
            assert not running, f"run_started at seq {e['seq']} while the previous run had no result yet"
            running = True
        elif e["type"] == "result":
            running = False


def test_reopening_a_conversation_with_a_live_run_does_not_fork_it(servers, new_page):
    server = servers("support.yaml")
    chat = Chat(new_page(), server).open(ready=False).pick_team("customer-support")
    chat.send("Order 1042 arrived broken, I want my money back")
    expect(chat.note("wants to call issue_refund")).to_be_visible()  # the run now waits for a decision
    tid = chat.thread_id()

    chat.open("/", ready=False)  # leave it waiting (a new chat in the same tab) ...
    chat.open_thread(tid)  # ... and come back to it from the sidebar
    expect(chat.note("wants to call issue_refund")).to_be_visible()
    expect(chat.note("wants to call issue_refund").get_by_role("button", name="Approve")).to_be_visible()
    chat.send("Any update?")
    wait_until(
        lambda: any(e.get("content") == "Any update?" for e in server.events(tid)), "the message in the store"
    )
    no_overlapping_runs(server.events(tid))


# -- stopping one server does not take the chart away from the others --------------------------------


def test_chart_still_shows_after_another_server_stopped(servers, own_server, new_page):
    server = servers("exhausted.yaml")  # any running server: its runs end with the chart
    # Two servers in one folder, as two `parley ui` in one checkout without PARLEY_WEB_DIR: Chainlit empties the
    # folder's `.files` when the second stops (a polite shutdown, e.g. Ctrl-C on `make run`).
    other = own_server("restart.yaml", web_dir=server.web_dir).start()
    other.stop()
    try:
        chat = Chat(new_page(), server).open()
        chat.send("Write about churn")
        expect(chat.note("Run ended")).to_contain_text("ScriptExhaustedError")
        expect(chat.note("Run ended").locator(f'img[alt="{CHART}"]')).to_be_visible(timeout=3000)
    finally:
        (server.web_dir / ".files").mkdir(exist_ok=True)
