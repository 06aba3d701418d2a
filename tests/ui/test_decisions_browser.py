"""Decisions in a real browser: a tied vote, a role's question, sub-tasks and a failing answer settled by hand.

Chromium drives `parley ui` with the shipped investment-committee and editorial-desk teams on scripted
models. Each test checks what a person sees and does on the page, then what the store recorded.
Set PARLEY_UI_SHOTS=/some/folder to keep a screenshot of each state worth looking at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from chat_started import evaluate

# The chat helpers, and Playwright's names once that module has checked Playwright and Chromium are here.
from test_chat_browser import Chat, Locator, Page, expect, of_type, result_of

SHARED_SERVERS = ("committee.yaml", "desk.yaml", "desk-seo.yaml")
SEO_BY_HAND = (
    '{"title": "Keep your customers", "meta_description": "How small shops cut churn", '
    '"keywords": ["churn", "retention", "small shops"]}'
)


def snap(page: Page, name: str, tmp_path: Path, show: Locator | None = None) -> None:
    """A screenshot of the page as it is now, with `show` scrolled into view."""
    if show is not None:
        evaluate(show, "el => el.scrollIntoView({block: 'center'})")
    folder = Path(os.environ.get("PARLEY_UI_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def test_a_tied_vote_goes_to_the_human_who_picks_a_position(servers, new_page, tmp_path):
    server = servers("committee.yaml")
    chat = Chat(new_page(), server).open(ready=False).pick_team("investment-committee")
    chat.send("Should we invest more in the EMEA region next quarter?")

    # Each round's tally: one row per answer, who voted for it, and what happens next.
    first = chat.note("Vote · round 1")
    expect(first).to_contain_text("No majority")
    table = first.get_by_role("table")
    expect(table.get_by_role("row")).to_have_count(4)  # the header and invest, hold, divest
    expect(table.get_by_role("row").filter(has_text="invest").filter(has_text="analyst")).to_have_count(1)
    expect(table.get_by_role("row").filter(has_text="hold").filter(has_text="risk")).to_have_count(1)
    expect(chat.note("Vote · round 2")).to_contain_text("Still split after the debate")
    snap(chat.page, "consensus-votes", tmp_path, first)

    # The tie comes to the human: every position, a button each, Continue and Write my own…
    card = chat.note("Your decision: the vote is tied")
    for label in ("Pick 1 · analyst", "Pick 2 · risk", "Pick 3 · forecaster", "Continue", "Write my own…"):
        expect(card.get_by_role("button", name=label)).to_be_visible()
    snap(chat.page, "consensus-tie", tmp_path, card)

    # Leave the run waiting and come back to it from the sidebar: the decision is offered again.
    tid = chat.thread_id()
    chat.open("/", ready=False)
    chat.open_thread(tid)
    card = chat.note("Your decision: the vote is tied").filter(
        has=chat.page.get_by_role("button", name="Continue")
    )
    card.get_by_role("button", name="Pick 1 · analyst").click()
    expect(chat.note("Decided by local")).to_contain_text("picked position 1 · analyst: invest")
    expect(chat.note("The tie is settled")).to_contain_text("invest (by local")
    verdict = chat.turns().filter(has_text="verdict · turn")
    expect(verdict).to_contain_text("Decision: invest (by a human's ruling after 2 rounds")
    expect(verdict.locator('img[alt="Avatar for verdict"]')).to_have_count(1)
    expect(chat.note("Run ended")).to_contain_text("completed", ignore_case=True)
    snap(chat.page, "consensus-verdict", tmp_path, verdict)
    # The settled card offers no decision any more: on this page, which reconnected while the run waited (the
    # buttons its first connection brought leave too), and on the thread opened again.
    buttons = re.compile(r"^(Pick \d|Continue|Write my own)")
    expect(chat.note("Your decision: the vote is tied").get_by_role("button", name=buttons)).to_have_count(0)
    chat.open("/", ready=False)
    chat.open_thread(tid)
    settled = chat.note("Your decision: the vote is tied")
    expect(settled).to_be_visible()
    expect(settled.get_by_role("button", name=buttons)).to_have_count(0)

    result_of(server, tid)
    events = server.events(tid)
    (resolved,) = of_type(events, "escalation_resolved")
    assert (resolved["decision"], resolved["choice"], resolved["actor"]) == ("choose", 1, "local")
    assert [v["outcome"] for v in of_type(events, "vote")] == ["debate", "tie", "human"]


def test_a_manager_delegates_asks_the_human_and_shares_notes(servers, new_page, tmp_path):
    server = servers("desk.yaml")
    chat = Chat(new_page(), server).open(ready=False).pick_team("editorial-desk")
    page = chat.page
    chat.send("Write a 300-word article on how to cut customer churn")

    # The editor asks; the next message typed is the answer (not an interjection).
    question = chat.note("editor asks you")
    expect(question).to_contain_text("Who is the article for: owners of small shops, or large retailers?")
    expect(question).to_contain_text("Type your answer below")
    snap(page, "desk-question", tmp_path, question)
    chat.send("Owners of small shops")
    expect(question).to_contain_text("Answered by local: Owners of small shops")

    # The editor's note lands on the team's shared notes, shown in the side panel.
    note = "Audience: owners of small shops (the human's answer)."
    added = chat.note("added to the Team notes")
    expect(added).to_contain_text(f"editor added to the Team notes (1): {note}")
    # The side panel's title is the notes' or, once the meter is updated again, the meter's.
    expect(page.locator("#side-view-title")).to_have_text(re.compile(r"^(Team notes · 1|Meter · .+)$"))
    expect(page.locator("#side-view-content")).to_contain_text(f"editor: {note}")

    # One card per sub-task: which worker is on what, and when it is done.
    research = chat.note("editor → researcher")
    expect(research).to_contain_text("Find three facts on churn in small shops")
    draft = chat.note("editor → writer")
    expect(draft).to_contain_text("Draft a 300-word article for small-shop owners")
    expect(research).to_contain_text("done")
    expect(draft).to_contain_text("done")
    expect(chat.turns().filter(has_text="researcher · turn")).to_contain_text(
        "sub-task from editor: Find three facts on churn in small shops"
    )
    snap(page, "desk-subtasks", tmp_path, draft)

    # The SEO answer fails its checks once: that attempt stays on screen, closed; the correction passes.
    failed = chat.note("Attempt 1 of 2 fails its checks")
    expect(failed).to_contain_text("Title: Keep your customers. Keywords: churn, retention")
    expect(failed).to_contain_text("seo is asked to correct it")
    expect(chat.note("corrected answer passes its checks")).to_contain_text("attempt 2")
    expect(chat.turns().filter(has_text="seo · turn").filter(has_text='"small shops"')).to_have_count(1)
    expect(chat.note("editor → seo")).to_contain_text("done")
    expect(chat.note("Run ended")).to_contain_text("editor said PUBLISH")
    tid = chat.thread_id()

    # The notes stay one click away: the name in the chat's note opens them again.
    added.get_by_text("Team notes", exact=True).click()
    expect(page.locator("#side-view-content")).to_contain_text(f"editor: {note}")
    snap(page, "desk-notes", tmp_path, added)

    result_of(server, tid)
    events = server.events(tid)
    (answer,) = of_type(events, "answer")
    assert (answer["content"], answer["actor"]) == ("Owners of small shops", "local")
    assert not [e for e in of_type(events, "human_message") if e["mode"] != "task"], (
        "the answer is no interjection"
    )
    done = [(e["worker"], e["status"]) for e in of_type(events, "subtask") if e["status"] != "started"]
    assert sorted(done) == [("researcher", "done"), ("seo", "done"), ("writer", "done")]

    # Reopened, the conversation reads as it ended: the question answered, the sub-tasks done.
    chat.reload()
    expect(chat.note("editor asks you")).to_contain_text("Answered by local: Owners of small shops")
    expect(chat.user_messages().filter(has_text="Owners of small shops")).to_have_count(1)
    expect(chat.note("editor → writer")).to_contain_text("done")
    expect(chat.note("Attempt 1 of 2 fails its checks")).to_be_visible()


def test_an_answer_that_keeps_failing_its_checks_is_settled_by_hand(servers, new_page, tmp_path):
    server = servers("desk-seo.yaml")
    chat = Chat(new_page(), server).open(ready=False).pick_team("editorial-desk")
    page = chat.page
    chat.send("Write the SEO block for an article on churn")

    expect(chat.note("Attempt 1 of 2 fails its checks")).to_contain_text("seo is asked to correct it")
    expect(chat.note("Attempt 2 of 2 fails its checks")).to_contain_text("is too short")
    card = chat.note("Your decision: an answer keeps failing its checks")
    for label in ("Pick 1 · seo", "Continue", "Write my own…"):
        expect(card.get_by_role("button", name=label)).to_be_visible()
    snap(page, "desk-escalation", tmp_path, card)

    card.get_by_role("button", name="Write my own…").click()
    expect(chat.note("Type your own answer")).to_be_visible()
    chat.send(SEO_BY_HAND)
    expect(chat.note("Decided by local")).to_contain_text("wrote their own answer")
    expect(card.get_by_role("button", name="Continue")).to_have_count(0)
    seo = chat.turns().filter(has_text="seo · turn").filter(has_text='"small shops"')
    expect(seo).to_contain_text("sub-task from editor")
    expect(chat.note("editor → seo")).to_contain_text("done")
    expect(chat.note("Run ended")).to_contain_text("editor said PUBLISH")
    snap(page, "desk-settled", tmp_path, seo)

    tid = chat.thread_id()
    result_of(server, tid)
    (resolved,) = of_type(server.events(tid), "escalation_resolved")
    assert (resolved["decision"], resolved["content"], resolved["actor"]) == ("write", SEO_BY_HAND, "local")
    assert ("local", "escalation resolved") in [(a.actor, a.action) for a in server.audit(tid)]
