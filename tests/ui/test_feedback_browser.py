"""Thumbs up and down in a real browser (issue 16, point 12): under every agent message, live and on the reopened
thread; a rating (with its comment) is kept with the message for the signed-in user, stays as it was left after a
reload, and `parley audit` exports who rated which message how. A rating sent straight to Chainlit's PUT /feedback
for another user's message, or for a conversation that does not exist, is refused and nothing is kept.

Screenshots, light and dark, go to $PARLEY_UI_SHOTS (default: the test's tmp folder).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chat_started import evaluate
from test_chat_browser import AGENT_STEP, Chat, expect, result_of, wait_until
from ui.conftest import Server

from parley.web._ratings import rating_id

SCRIPT = """\
roles:
  researcher:
    - "Research notes: replacing a lost customer costs five to seven times more than keeping one."
  writer:
    - "Draft one: churn is the quiet leak in a small business's revenue, and it can be measured every month."
  editor:
    - "Clear and accurate. APPROVE"
delay_s: 1.0
"""
ALICE, BOB = ("alice", "alice-password-1"), ("bob", "bob-password-22")
THUMBS = ".positive-feedback-off, .positive-feedback-on, .negative-feedback-off, .negative-feedback-on"


@pytest.fixture(scope="module")
def two_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server (content-studio, a quick script) where alice and bob sign in, shared by this module's tests."""
    folder = tmp_path_factory.mktemp("feedback")
    script = folder / "script.yaml"
    script.write_text(SCRIPT, encoding="utf-8")
    server = Server(folder / "data", str(script))
    for name, password in (ALICE, BOB):
        server.parley("users", "add", name, "--password-stdin", stdin=password + "\n")
    try:
        yield server.start()
    finally:
        server.stop()


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PARLEY_UI_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def theme(chat: Chat, which: str) -> None:
    """Pick the theme as a person does: the header's theme menu."""
    chat.page.locator("#theme-toggle").click()
    chat.page.get_by_role("menuitem", name=which.capitalize()).click()
    expect(chat.page.locator("html")).to_have_class(re.compile(rf"\b{which}\b"))
    chat.page.keyboard.press("Escape")
    expect(chat.page.get_by_role("menu")).to_have_count(0)


def rate(chat: Chat, message: Any, thumb: str, comment: str = "") -> None:
    """Click a thumb ("positive" or "negative") under `message`; Chainlit's dialog asks for a comment."""
    message.locator(f".{thumb}-feedback-off").click()
    dialog = chat.page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    if comment:
        dialog.locator("textarea").fill(comment)
    dialog.locator("#submit-feedback").click()
    expect(dialog).to_have_count(0)
    expect(message.locator(f".{thumb}-feedback-on")).to_be_visible()


def ratings(server: Server, tid: str) -> list[Any]:
    return server.query(lambda s: s.feedback_of(tid))


def test_a_thumb_is_kept_with_its_message_for_the_user_and_stays_after_a_reload(
    two_users, new_page, tmp_path
):
    server = two_users
    chat = Chat(new_page(), server).login(*ALICE)
    page = chat.page
    chat.send("Write about churn")

    # Live, while the run goes on: the researcher's finished message can be rated at once.
    researcher = chat.agent("researcher", 1)
    expect(researcher.locator(".positive-feedback-off")).to_be_enabled()
    rate(chat, researcher, "positive")
    tid = chat.thread_id()
    wait_until(lambda: ratings(server, tid), "the thumbs up in the store")

    expect(chat.note("Run ended")).to_contain_text("editor said APPROVE")
    result_of(server, tid)
    writer, editor = chat.agent("writer", 2), chat.agent("editor", 3)
    rate(chat, writer, "negative", "Too vague: which figure?")
    # Thumbs under each agent message, and only there: not under the task, nor the closing line.
    for message in (researcher, writer, editor):
        expect(message.locator(THUMBS)).to_have_count(2)
    expect(page.locator(THUMBS)).to_have_count(6)
    expect(chat.note("Run ended").locator(THUMBS)).to_have_count(0)
    expect(chat.user_messages().locator(THUMBS)).to_have_count(0)
    expect(page.get_by_text(re.compile("Used on_message"))).to_have_count(
        0
    )  # no "Used …" wrapper around them
    expect(page.locator('.step[data-step-type="run"]')).to_have_count(0)

    kept = wait_until(
        lambda: [r for r in ratings(server, tid) if r.value == 0], "the thumbs down in the store"
    )
    (down,) = kept
    assert (down.actor, down.comment, down.step_id) == (
        "alice",
        "Too vague: which figure?",
        rating_id(tid, "writer", 0),
    )
    assert "Draft one: churn is the quiet leak" in down.message
    (up,) = [r for r in ratings(server, tid) if r.value == 1]
    assert (up.actor, up.step_id) == ("alice", rating_id(tid, "researcher", 0))
    assert "five to seven times" in up.message

    folder = shots(tmp_path)
    for which in ("light", "dark"):
        theme(chat, which)
        # From the task down: the three messages, each with its thumbs; no focus ring left on the theme menu.
        evaluate(chat.user_messages().first, "step => step.scrollIntoView({block: 'start'})")
        evaluate(page, "() => document.activeElement && document.activeElement.blur()")
        expect(editor.locator(THUMBS).first).to_be_in_viewport()
        page.screenshot(path=str(folder / f"feedback-rated-{which}.png"))

    # Reopened: the thumbs stay as they were left, the comment with them; a thumb clicked again is taken back.
    chat.reload()
    writer, researcher = chat.agent("writer", 2), chat.agent("researcher", 1)
    expect(writer.locator(".negative-feedback-on")).to_be_visible()
    expect(researcher.locator(".positive-feedback-on")).to_be_visible()
    expect(chat.agent("editor", 3).locator(".positive-feedback-off")).to_be_visible()
    expect(page.locator(".positive-feedback-on, .negative-feedback-on")).to_have_count(2)
    researcher.locator(".positive-feedback-on").click()
    expect(researcher.locator(".positive-feedback-off")).to_be_visible()
    wait_until(lambda: [r.value for r in ratings(server, tid)] == [0], "the thumbs up taken back")

    md = server.parley("audit", tid).stdout
    rows = [line for line in md.splitlines() if "| feedback |" in line]
    assert len(rows) == 3, md
    assert "| alice | feedback | thumbs up | message: **researcher** · turn 1 Research notes" in rows[0]
    assert (
        "| alice | feedback | thumbs down | text: Too vague: which figure?; message: **writer** · turn 2"
        in rows[1]
    )
    assert "| alice | feedback | removed |" in rows[2]
    lines = server.parley("audit", tid, "--format", "jsonl").stdout.splitlines()
    exported = [r for r in map(json.loads, lines) if r["what"] == "feedback"]
    assert [(r["who"], r["decision"], r["detail"]["step"]) for r in exported] == [
        ("alice", "thumbs up", rating_id(tid, "researcher", 0)),
        ("alice", "thumbs down", rating_id(tid, "writer", 0)),
        ("alice", "removed", rating_id(tid, "researcher", 0)),
    ]
    assert exported[1]["detail"]["message"].startswith("**writer** · turn 2")


def test_a_rating_sent_for_another_users_message_or_no_conversation_is_refused(two_users, new_page):
    """Chainlit's PUT /feedback, asked directly (as a script would) with bob's login: alice's message, a
    conversation that does not exist, and bob's own non-message steps are all refused; nothing is kept."""
    server = two_users
    alice = Chat(new_page(), server).login(*ALICE)
    alice.send("Write about churn")
    expect(alice.note("Run ended")).to_contain_text("editor said APPROVE")
    tid = alice.thread_id()
    before = len(ratings(server, tid))
    audited = len(server.audit(tid))

    bob = Chat(new_page(), server).login(*BOB)
    request = bob.page.request

    def put(feedback: dict[str, Any], api: Any = request) -> int:
        body = {"feedback": {"value": 1} | feedback, "sessionId": str(uuid.uuid4())}
        return api.put(server.url + "/feedback", data=body, headers={"Origin": server.url}).status

    assert put({"forId": rating_id(tid, "writer", 0), "threadId": tid}) >= 400  # alice's
    assert (
        put({"forId": rating_id(tid, "writer", 0), "threadId": str(uuid.uuid4())}) >= 400
    )  # no conversation
    assert put({"forId": rating_id(tid, "writer", 0)}) >= 400  # none named
    # Alice herself: only her conversation's agent messages, not the task she typed, nor a step made up.
    assert put({"forId": f"{tid}-0", "threadId": tid}, alice.page.request) >= 400
    assert put({"forId": rating_id(tid, "writer", 7), "threadId": tid}, alice.page.request) >= 400
    # Nobody signed in: refused before the data layer is asked.
    fresh = new_page()
    assert put({"forId": rating_id(tid, "writer", 0), "threadId": tid}, fresh.request) in (401, 403)

    assert len(ratings(server, tid)) == before
    assert len(server.audit(tid)) == audited
    # The way the page asks works, for its owner.
    assert put({"forId": rating_id(tid, "writer", 0), "threadId": tid}, alice.page.request) == 200
    (kept,) = ratings(server, tid)[before:] or ratings(server, tid)
    assert kept.actor == "alice"
    expect(bob.page.locator(AGENT_STEP).filter(has_text="Draft one")).to_have_count(
        0
    )  # bob saw nothing of it
