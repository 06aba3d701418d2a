"""The run's controls in a real browser (issue 16, points 1, 3, 9, 11): a one-click Stop while a run is live and
nothing while idle, Interrupt offered only then; an interjection not joined yet survives a reload; a tool call
waiting for approval is shown as waiting, its output as monospace text, said once; the closing line in plain words.

Set PARLEY_UI_SHOTS=/some/folder to keep a screenshot of each state worth looking at (light and dark).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from chat_started import evaluate
from test_chat_browser import Chat, Page, expect, of_type, result_of, wait_until

SHARED_SERVERS = ("support.yaml", "studio-slow-writer.yaml")


def snap(page: Page, name: str) -> None:
    """Screenshots of the page as it is, in the light and the dark theme, if PARLEY_UI_SHOTS names a folder. Not
    otherwise: four screenshots on a loaded machine outlast a turn the test means to stop while it streams."""
    shots = os.environ.get("PARLEY_UI_SHOTS")
    if not shots:
        return
    folder = Path(shots)
    folder.mkdir(parents=True, exist_ok=True)
    for theme in ("light", "dark"):
        evaluate(
            page,
            "t => { const c = document.documentElement.classList; c.remove('light', 'dark'); c.add(t); }",
            theme,
        )
        page.screenshot(path=str(folder / f"controls-{name}-{theme}.png"))


def test_stop_is_one_click_while_a_run_is_live_and_absent_while_idle(servers, new_page):
    server = servers("studio-slow-writer.yaml")
    chat = Chat(new_page(), server).open()
    page = chat.page
    stop = page.get_by_role("button", name="Stop")
    # Idle: no Stop, no Interrupt.
    expect(page.locator("#command-Interrupt")).to_have_count(0)
    expect(stop).to_have_count(0)

    chat.send("Write a 150-word post on customer churn")
    expect(chat.agent("researcher", 1)).to_contain_text("five to seven times")
    writer = chat.agent("writer", 2)
    expect(writer).to_be_visible()  # the writer is streaming its turn
    expect(page.locator("#command-Interrupt")).to_be_visible()
    expect(chat.controls()).to_contain_text("turn 2")
    snap(page, "live")

    stop.click()  # one click: nothing to send
    expect(chat.note("Run ended")).to_contain_text("Stopped by you at turn 2")
    expect(writer).to_contain_text("cut short: stopped")
    # Nothing left but the status line: no "Stop" bubble, no controls, no chips.
    expect(chat.user_messages()).to_have_count(1)
    expect(chat.controls()).to_have_count(0)
    expect(stop).to_have_count(0)
    expect(page.locator("#command-Interrupt")).to_have_count(0)
    expect(page.get_by_text("Task manually stopped")).to_have_count(0)
    snap(page, "stopped")
    tid = chat.thread_id()
    assert result_of(server, tid)["stop_reason"] == "stopped"
    assert [m["source"] for m in of_type(server.events(tid), "message")] == ["researcher"]


def test_interrupt_is_offered_while_live_and_joins_at_once(servers, new_page):
    server = servers("studio-slow-writer.yaml")
    chat = Chat(new_page(), server).open()
    chat.send("Write a 150-word post on customer churn")
    writer = chat.agent("writer", 2)
    expect(writer).to_be_visible()
    chat.command("Interrupt", "Make it a checklist")  # select Interrupt, type, send: the turn is cut now
    expect(chat.note("↳ your message interrupted the turn")).to_contain_text("Make it a checklist")
    expect(writer.filter(has_text="cut short: interrupt")).to_have_count(1)
    expect(chat.note("Run ended")).to_contain_text("editor said APPROVE")
    expect(chat.page.locator("#command-Interrupt")).to_have_count(0)  # gone with the run


def test_a_pending_approval_reads_as_pending_and_stop_cancels_it(servers, new_page):
    server = servers("support.yaml")
    chat = Chat(new_page(), server).open(ready=False).pick_team("customer-support")
    page = chat.page
    chat.send("Order 1042 arrived broken, I want my money back")

    # The lookup ran: its step holds the output as monospace text, said once (not again in billing's message).
    billing = chat.agent("billing", 2)
    expect(billing).to_contain_text("its result is in the step above")
    expect(billing).not_to_contain_text("Order 1042 on")
    output = chat.tool_output("lookup_order")
    expect(output).to_contain_text("Order 1042 on 2025-11-09")
    code = output.locator("code").filter(has_text="Order 1042 on")
    expect(code).to_have_css("font-family", re.compile("monospace"))
    expect(code).to_have_class(re.compile(r"\blanguage-text\b"))  # plain text, not Markdown
    expect(output.locator("a")).to_have_count(0)  # the customer's e-mail address is text, not a link
    expect(code).to_contain_text(re.compile(r"\n- 5 x Vista 27 4K Monitor at 395\.12\n"))  # lines stay lines

    # The refund waits for approval: a card with Approve and Deny buttons, and no "Used issue_refund" yet.
    card = chat.note("wants to call issue_refund").filter(has_text="395.12")
    approve = card.get_by_role("button", name="Approve")
    expect(approve).to_be_visible()
    expect(card.get_by_role("button", name="Deny…")).to_be_visible()
    expect(page.locator('[id="step-issue_refund"]')).to_have_count(0)
    snap(page, "pending-approval")

    # An interjection typed now waits for the turn to end; a reload must not lose its bubble.
    chat.send("Please hurry, the customer is waiting")
    chat.reload()
    expect(chat.user_messages().filter(has_text="Please hurry")).to_have_count(1)
    expect(card.get_by_role("button", name="Approve")).to_be_visible()
    # The reopened page may connect more than once in a row; a click sent on a connection it then drops is lost.
    chat.starts.wait_live()
    expect(chat.controls().last).not_to_contain_text("starting")  # the run's turn, not a new run's

    chat.stop()
    try:
        expect(chat.note("Run ended")).to_contain_text("Stopped by you at turn 3")
    except (
        AssertionError
    ) as exc:  # which connection took the click (tests/chat_started.py), what the run stored
        stored = [e["type"] for e in server.events(chat.thread_id())][-8:]
        raise AssertionError(
            f"{exc}\n{chat.starts.connections()}\nthe run's last stored events: {stored}"
        ) from None
    expect(card).to_contain_text("Cancelled")
    expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    tid = chat.thread_id()
    result_of(server, tid)
    actions = wait_until(
        lambda: (
            [(a.action, a.detail.get("decision")) for a in server.audit(tid) if "approv" in a.action][-1:]
            == [("approval cancelled", "cancelled")]
        ),
        "the audit to record the approval as cancelled",
    )
    assert actions
    assert "Traceback" not in server.log_tail(400) and "task_done" not in server.log_tail(400)
