"""The web chat's pieces that need no browser: history rebuilt from stored events, users, pictures."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chainlit as cl
import pytest
from chainlit.context import init_ws_context
from chainlit.emitter import ChainlitEmitter
from chainlit.session import WebsocketSession
from chainlit.types import Pagination, ThreadFilter

from parley._model_notes import DEMO_MARK
from parley.events import (
    AnswerEvent,
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    ChunkEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    FileEvent,
    HumanMessageEvent,
    MessageEvent,
    NoteEvent,
    Position,
    QuestionEvent,
    RunResult,
    RunStartedEvent,
    SubtaskEvent,
    ToolCallEvent,
    ToolProgressEvent,
    ToolResultEvent,
    TriggerEvent,
    UsageEvent,
    ValidationEvent,
    VoteEvent,
)
from parley.store import Store
from parley.web import _chainlit_fixes, _chainlit_pause, _streams
from parley.web._art import avatar_file_name, avatar_png, colour, usage_chart_svg
from parley.web._chat import ChatSession
from parley.web._datalayer import ParleyDataLayer, card_step_id, thread_made, thread_steps, thread_view
from parley.web._format import note, vote_text
from parley.web._handover import Handover
from parley.web._panels import Meter, NotesPanel
from parley.web.addresses import host_only as _host_of
from parley.web.addresses import loopback as _loopback


def test_reopened_thread_shows_what_the_user_saw_in_order() -> None:
    events = [
        HumanMessageEvent(source="user", content="Refund order 1042", mode="task"),
        MessageEvent(source="triage", content="Billing, check it", turn=1),
        ToolCallEvent(
            source="billing", name="issue_refund", arguments={"order_id": 1042}, call_id="c1", turn=2
        ),
        ApprovalRequestEvent(
            source="billing", name="issue_refund", arguments={"order_id": 1042}, request_id="c1", turn=2
        ),
        ApprovalDecisionEvent(
            source="dana",
            name="issue_refund",
            request_id="c1",
            approved=False,
            reason="too much",
            actor="dana",
            turn=2,
        ),
        ToolResultEvent(
            source="billing", name="issue_refund", call_id="c1", content="denied: too much", is_error=True
        ),
        HumanMessageEvent(source="user", content="Only 50 please", mode="say", turn=2),
        RunResult(stop_reason="stopped", turns=2, prompt_tokens=10, completion_tokens=5, cost_usd=None),
    ]
    steps = thread_steps("t1", events)
    kinds = [(s["type"], s["name"]) for s in steps]
    assert kinds == [
        ("user_message", "user"),
        ("assistant_message", "triage"),
        ("tool", "issue_refund"),
        ("assistant_message", "parley"),
        ("assistant_message", "parley"),
        ("user_message", "user"),
        ("assistant_message", "parley"),
        ("assistant_message", "parley"),
    ]
    tool = steps[2]
    assert tool["output"] == "denied: too much" and tool["isError"] and '"order_id": 1042' in tool["input"]
    assert steps[1]["output"].startswith("**triage** · turn 1")
    assert "denied by dana: too much" in steps[4]["output"]
    assert "joined the conversation after turn 2" in steps[6]["output"]
    # The closing line as live: in plain words, its turns counted as the usage chart counts them.
    assert steps[7]["output"].startswith("**Run ended** · **Stopped by you** at turn 2 · 1 turn ·")
    assert "cost unknown" in steps[7]["output"]
    assert len({s["id"] for s in steps}) == len(steps)
    # A live run reopened in another tab puts the approval's buttons back on this very step.
    assert steps[3]["id"] == card_step_id("t1", "c1")


async def test_sidebar_lists_only_the_owners_threads(store: Store) -> None:
    async def get() -> Store:
        return store

    layer = ParleyDataLayer(get)
    mine = await store.create_thread("alice", "content-studio", "local", "Alice's task", thread_id="a-1")
    await store.create_thread("bob", "content-studio", "local", "Bob's task", thread_id="b-1")
    page = await layer.list_threads(Pagination(first=20), ThreadFilter(userId="alice"))
    assert [t["id"] for t in page.data] == [mine]
    assert await layer.get_thread_author("b-1") == "bob"
    thread = await layer.get_thread("a-1")
    assert thread is not None and thread["userIdentifier"] == "alice"
    assert thread["metadata"] == {"chat_profile": "content-studio"}


async def test_the_page_is_told_of_a_new_thread_only_once_it_is_listed(store: Store) -> None:
    """Chainlit tells the page of a new chat's thread (`first_interaction`) after the data layer's `update_thread`,
    and the page then fetches its list of threads once. The web chat stores the thread in its message handler, side
    by side: when the page asked first, the sidebar lacked the new conversation until the next reload."""

    async def get() -> Store:
        return store

    layer = ParleyDataLayer(get)
    tid = str(uuid.uuid4())
    told = asyncio.create_task(layer.update_thread(tid, name="Alice's confidential churn memo"))
    await asyncio.sleep(0)  # (either order must work: here Chainlit's task starts first)
    assert not told.done()  # not yet: the thread is not stored
    await store.create_thread("alice", "content-studio", "local", "", thread_id=tid)
    thread_made(tid)
    await asyncio.wait_for(told, 10)
    listed = await layer.list_threads(Pagination(first=20), ThreadFilter(userId="alice"))
    assert [t["id"] for t in listed.data] == [tid]
    assert listed.data[0]["name"] == "Alice's confidential churn memo"  # and named by the first message
    # A thread the web chat already stored is told at once; a disconnect's metadata never waits.
    await asyncio.wait_for(layer.update_thread(tid, name="again"), 10)
    await asyncio.wait_for(layer.update_thread(str(uuid.uuid4()), metadata={"a": 1}), 10)


def test_local_mode_only_on_loopback() -> None:
    assert all(_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(_loopback(h) for h in ("0.0.0.0", "10.1.2.3", "example.com"))
    assert [_host_of(h) for h in ("127.0.0.1:8000", "[::1]:8000", "localhost", "example.com:443")] == [
        "127.0.0.1",
        "::1",
        "localhost",
        "example.com",
    ]


def test_avatars_and_chart() -> None:
    png = avatar_png("analyst")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png == avatar_png("analyst")
    assert colour("analyst") == colour("analyst") and colour("parley") == "#6b7280"
    assert avatar_file_name("Code Reviewer") == "code_reviewer.png"
    svg = usage_chart_svg([("analyst", 1200, 300, 3), ("selector", 400, 10, 0)])
    assert (
        svg.startswith("<svg") and "analyst" in svg and "1,200 | 300 · 3 turns" in svg and "selector" in svg
    )


def test_reopened_thread_shows_questions_subtasks_and_decisions_settled() -> None:
    started = SubtaskEvent(
        source="editor", subtask_id="s1", worker="seo", task="Title and keywords", status="started", turn=2
    )
    events = [
        HumanMessageEvent(source="user", content="Write about churn", mode="task"),
        ToolCallEvent(
            source="editor", name="ask_human", arguments={"question": "For whom?"}, call_id="c1", turn=1
        ),
        QuestionEvent(
            source="editor", content="For whom?", question_id="q1", timeout_s=600, default="guess", turn=1
        ),
        AnswerEvent(source="dana", content="Small shops", question_id="q1", actor="dana", turn=1),
        ToolResultEvent(
            source="editor", name="ask_human", call_id="c1", content="The human answered: Small shops"
        ),
        started,
        ValidationEvent(
            source="seo",
            content="Title: churn",
            passed=False,
            attempt=1,
            retries=0,
            problems=["the answer must be JSON"],
            turn=2,
        ),
        EscalationEvent(
            source="seo",
            content="seo's answer still fails its checks",
            escalation_id="e1",
            kind="validation",
            positions=[Position(who="seo", text="Title: churn")],
            turn=2,
        ),
        EscalationResolvedEvent(
            source="dana",
            escalation_id="e1",
            decision="write",
            content='{"title": "Churn"}',
            actor="dana",
            turn=2,
        ),
        MessageEvent(source="seo", content='{"title": "Churn"}', turn=2),
        started.model_copy(update={"status": "done", "task": "", "content": '{"title": "Churn"}'}),
        MessageEvent(source="editor", content="Ready. PUBLISH", turn=3),
    ]
    steps = thread_steps("t2", events)
    shown = [(s["type"], s["name"], s["output"]) for s in steps]
    assert [(kind, name) for kind, name, _ in shown] == [
        ("user_message", "user"),
        ("assistant_message", "editor"),
        ("user_message", "user"),
        ("assistant_message", "editor"),
        ("assistant_message", "seo"),
        ("assistant_message", "parley"),
        ("user_message", "user"),
        ("assistant_message", "parley"),
        ("assistant_message", "seo"),
        ("assistant_message", "editor"),
    ]
    question, answer, subtask, attempt, escalation, written, decided, seo = (s[2] for s in shown[1:9])
    assert "For whom?" in question and "Answered by dana: Small shops" in question and answer == "Small shops"
    assert "editor → seo" in subtask and "Title and keywords" in subtask and "done" in subtask
    assert "Attempt 1 of 1 fails its checks" in attempt and "the answer must be JSON" in attempt
    assert "an answer keeps failing its checks" in escalation and "1. **seo**: Title: churn" in escalation
    assert written == '{"title": "Churn"}' and "Decided by **dana**: wrote their own answer" in decided
    assert seo.startswith("**seo** · turn 2 · sub-task from editor: *Title and keywords*")
    assert not any(s["type"] == "tool" for s in steps), "ask_human shows as the question, not as a tool call"


def test_a_vote_reads_as_a_tally_of_who_voted_what() -> None:
    vote = VoteEvent(
        source="tally",
        round=1,
        votes={"analyst": "invest", "risk": "hold", "cfo": "invest"},
        tally={"invest": 2, "hold": 1},
        outcome="majority",
        decision="invest",
    )
    text = vote_text(vote)
    # The table reads the same in a reopened thread as live (where the vote shows as its note).
    assert thread_steps("t7", [vote])[0]["output"] == (note(vote) or ("", ""))[1]
    assert "| **invest** |" in (note(vote) or ("", ""))[1]
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert rows == [
        "| **invest** | `██████░░░` 2 of 3 | analyst, cfo |",
        "| **hold** | `███░░░░░░` 1 of 3 | risk |",
    ]
    assert "Majority for invest" in text
    assert note(TriggerEvent(source="parley", role="risk", on="message from analyst")) == (
        "parley",
        "⚡ *risk woken by message from analyst*",
    )


def test_a_subtask_the_run_never_saw_finish_reads_as_cut_short() -> None:
    events = [
        HumanMessageEvent(source="user", content="Write about churn", mode="task"),
        SubtaskEvent(
            source="editor", subtask_id="s1", worker="writer", task="Draft it", status="started", turn=1
        ),
        RunResult(stop_reason="stopped", turns=0, prompt_tokens=0, completion_tokens=0, cost_usd=None),
    ]
    card = thread_steps("t3", events)[1]
    assert card["id"] == card_step_id("t3", "s1")
    assert "editor → writer" in card["output"] and "not finished: the run ended (stopped)" in card["output"]


def test_a_tool_result_nested_past_the_recursion_limit_still_shows_as_text() -> None:
    from parley.web._format import quoted

    deep = "[" * 100_000 + "]" * 100_000
    shown = quoted(deep)
    assert shown.startswith("> [[[") and "```json" not in shown
    assert quoted('{"a": 1}').startswith("```json")


# -- a run shown live: what ChatSession sends to the page ------------------------------------------------


class _Page:
    """What the web chat sends one browser session (Chainlit's socket emits), without a browser."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.news = asyncio.Condition()

        async def emit(event: str, data: Any) -> None:
            async with self.news:
                self.sent.append((event, data))
                self.news.notify_all()

        async def emit_call(*_: Any) -> None:
            return None

        self.session = WebsocketSession(
            id=str(uuid.uuid4()),
            socket_id=str(uuid.uuid4()),
            emit=emit,  # pyright: ignore[reportArgumentType] - Chainlit awaits what emit returns
            emit_call=emit_call,
            user_env={},
            client_type="webapp",
            thread_id=str(uuid.uuid4()),
        )
        init_ws_context(self.session)

    def steps(self, name: str) -> list[dict[str, Any]]:
        """Every state of the step(s) called `name`, as sent, oldest first."""
        return [d for e, d in self.sent if e in ("new_message", "update_message") and d.get("name") == name]

    async def until(self, check: Callable[[], Any], what: str) -> Any:
        async def wait() -> Any:
            async with self.news:
                while not (found := check()):
                    await self.news.wait()
                return found

        try:
            return await asyncio.wait_for(wait(), 10)
        except TimeoutError:
            raise AssertionError(f"the page was never sent {what}: {self.sent}") from None


class _Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


async def test_a_server_streaming_to_many_pages_sends_each_fewer_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every piece is a socket message, the costliest part of a streamed message for the server: a process streaming
    to many pages sends each one what came less often (nothing is lost: the whole message replaces the pieces)."""
    clock = _Monotonic()
    monkeypatch.setattr(_streams, "time", clock)
    words = [f"w{i} " for i in range(20)]
    page = _Page()
    chat = ChatSession(conversation=_Conversation(), user="local")  # type: ignore[arg-type]

    async def tokens(source: str, *, then: Event | None = None) -> list[str]:
        """The pieces a message of `source` streamed to the page; `then` is shown after its pieces."""
        live, before = _streams.PAGE_STREAMS.live, len(page.sent)
        for word in words:  # a piece every 0.125 s from the engine
            clock.now += 0.125
            await chat.show(ChunkEvent(source=source, content=word, turn=1))
            assert _streams.PAGE_STREAMS.live == live + 1  # counted while it streams
        if then is not None:
            await chat.show(then)
        # The message's start (its header and first piece, one socket event), then each piece sent after it.
        sent = [
            d["output"] if e == "stream_start" else d["token"] for e, d in page.sent[before:] if "stream" in e
        ]
        assert next(e for e, _ in page.sent[before:] if "stream" in e) == "stream_start"
        await chat.show(MessageEvent(source=source, content="the whole reply", turn=1))
        assert page.sent[-1][0] == "new_message" and page.sent[-1][1]["output"].endswith("the whole reply")
        assert _streams.PAGE_STREAMS.live == live  # and no longer once the message came
        return sent

    alone = await tokens("analyst")
    assert alone[0].startswith("**analyst**") and alone[0].endswith(words[0])
    assert "".join(alone).endswith("".join(words)) and len(alone) == 20  # each piece as it came
    others = [_streams.PAGE_STREAMS.begin() for _ in range(150)]  # this process streams to 150 more pages
    try:
        # A piece every 0.5 s: 2.5 s of text in 5, not 20. A tool call next sends what was held first, so the
        # message does not read cut off while the tool runs or waits for approval.
        call = ToolCallEvent(source="writer", name="lookup", arguments={}, call_id="c1")
        loaded = await tokens("writer", then=call)
        assert 4 <= len(loaded) <= 7 and "".join(loaded).endswith("".join(words))
        again = await tokens("writer", then=call)  # the same speaker again at once: its first piece shows now
        assert again[0].endswith(words[0]) and "".join(again).endswith("".join(words))
    finally:
        for other in others:
            _streams.PAGE_STREAMS.end(other)


async def test_a_running_tools_progress_and_log_show_in_its_step_until_the_result() -> None:
    page = _Page()
    chat = ChatSession(conversation=None, user="local")  # type: ignore[arg-type] # tool events need no conversation
    tool = "everything.longRunningOperation"
    await chat.show(ToolCallEvent(source="researcher", name=tool, arguments={"duration": 10}, call_id="c1"))
    await chat.show(
        ToolProgressEvent(
            source="researcher", name=tool, call_id="c1", progress=3, total=10, content="Fetching\npage 3"
        )
    )
    assert page.steps(tool)[-1]["output"] == "Working: 3/10 · Fetching page 3"
    assert page.steps(tool)[-1]["id"] == page.steps(tool)[0]["id"]  # inside the tool's own step

    # Progress reported faster than it is worth showing: the latest state shows, a moment later.
    for n in range(4, 10):
        await chat.show(ToolProgressEvent(source="researcher", name=tool, call_id="c1", progress=n, total=10))
    await chat.show(
        ToolProgressEvent(source="researcher", name=tool, call_id="c1", level="warning", content="slow disk")
    )
    latest = await page.until(lambda: "9/10" in page.steps(tool)[-1]["output"], "the latest progress")
    assert latest and len(page.steps(tool)) <= 4
    assert (
        page.steps(tool)[-1]["output"] == "Working: 9/10\nwarning: slow disk"
    )  # monospace text, line by line

    # The result replaces the progress; the server's log lines stay under it.
    await chat.show(ToolResultEvent(source="researcher", name=tool, call_id="c1", content="done in 10 s"))
    assert page.steps(tool)[-1]["output"] == "done in 10 s\nwarning: slow disk"
    assert not chat.tools.progress


async def test_progress_of_a_call_shown_on_another_page_gets_a_step_here() -> None:
    """A reopened thread: the tool's call was shown on the page before; its progress still shows."""
    page = _Page()
    chat = ChatSession(conversation=None, user="local")  # type: ignore[arg-type]
    await chat.show(
        ToolProgressEvent(
            source="analyst", name="db.export", call_id="c9", level="info", content="1,000 rows written"
        )
    )
    (step,) = page.steps("db.export")[-1:]
    assert step["type"] == "tool" and "info: 1,000 rows written" in step["output"]
    await chat.show(ToolResultEvent(source="analyst", name="db.export", call_id="c9", content="exported"))
    assert page.steps("db.export")[-1]["output"].startswith("exported")


async def test_a_picture_a_tool_saved_shows_as_a_picture(tmp_path: Path) -> None:
    """An MCP image (saved in the role's workspace) or a chart: inline, as an image the page can draw."""
    page = _Page()
    chat = ChatSession(conversation=None, user="local")  # type: ignore[arg-type]
    png = tmp_path / "chart.png"
    png.write_bytes(avatar_png("analyst"))
    await chat.show(
        FileEvent(
            source="analyst",
            content="analyst wrote chart.png",
            name="chart.png",
            path=str(png),
            mime="image/png",
            size=png.stat().st_size,
            tool="everything.getTinyImage",
        )
    )
    (element,) = [d for e, d in page.sent if e == "element"]
    assert (element["type"], element["display"], element["mime"]) == ("image", "inline", "image/png")
    assert element["url"] == "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    (message,) = [d for e, d in page.sent if e == "new_message"]
    assert element["forId"] == message["id"] and "chart.png" in message["output"]


class _Conversation:
    """What ChatSession reads of a conversation while it shows a run: its history and thread."""

    def __init__(self) -> None:
        self.history: list[Event] = []
        self.thread_id = str(uuid.uuid4())
        self.store = None  # not stored: nobody's access to look up

    def demo_quality(self, source: str) -> bool:
        return False


async def test_a_page_reopened_while_the_run_goes_on_loses_nothing_the_run_shows() -> None:
    """Chainlit reads the thread, calls on_chat_resume, then sends the thread to the page, which replaces every
    message there. A message the run showed in between used to be lost for good (a flaky browser test)."""
    conv = _Conversation()
    events: asyncio.Queue[Event] = asyncio.Queue()

    async def run() -> Any:
        while True:
            ev = await events.get()
            yield ev
            if isinstance(ev, RunResult):
                return

    def emit(ev: Event) -> None:
        conv.history.append(ev)
        events.put_nowait(ev)

    old = _Page()
    chat = ChatSession(conversation=conv, user="local")  # type: ignore[arg-type]
    chat.handover = Handover(connected=lambda sid: True)  # these pages have no real sockets
    pump = asyncio.ensure_future(chat._pump(run()))  # type: ignore[arg-type]
    emit(MessageEvent(source="analyst", content="Growth is the strongest signal", turn=1))
    await old.until(lambda: old.steps("analyst"), "the first message")

    new = _Page()  # the thread reopened: on_chat_resume, then Chainlit sends the thread it read before
    await chat.reattach(new.session)
    stale: dict[str, Any] = {"id": conv.thread_id, "steps": []}  # read before the first message was stored
    emit(MessageEvent(source="risk", content="Too concentrated", turn=2))  # the run goes on meanwhile
    emit(
        RunResult(
            source="parley",
            stop_reason="completed",
            turns=2,
            prompt_tokens=0,
            completion_tokens=0,
            cost_usd=0,
        )
    )
    await _chainlit_fixes._resume_thread(ChainlitEmitter(new.session), stale)
    await asyncio.wait_for(pump, 10)

    (thread,) = [d for e, d in new.sent if e == "resume_thread"]
    assert [s["output"] for s in thread["steps"] if s["type"] != "run"] == [
        (note(conv.history[0]) or ("", ""))[1]
    ]  # what was shown so far
    after = new.sent[new.sent.index(("resume_thread", thread)) + 1 :]
    texts = [d["output"] for e, d in after if e == "new_message"]
    assert any("Too concentrated" in t for t in texts) and any("Run ended" in t for t in texts), texts
    assert [d for e, d in new.sent[: new.sent.index(("resume_thread", thread))] if e == "new_message"] == []
    assert not [d for e, d in old.sent if e == "new_message" and "Too concentrated" in d["output"]]


async def test_a_run_goes_on_on_the_newest_page_still_there_whatever_order_the_pages_reopen_in() -> None:
    """A reloaded tab may connect twice in a row, each connection reopening the thread; their handlers run side by
    side, so the connection the page already dropped may reach the run last. The run used to be shown there, on a
    socket nobody listened to: Stop, "Run ended" and the meter never reached the page (a flaky browser test)."""
    conv = _Conversation()
    events: asyncio.Queue[Event] = asyncio.Queue()

    async def run() -> Any:
        while (ev := await events.get()) is not None:
            yield ev

    def emit(ev: Event) -> None:
        conv.history.append(ev)
        events.put_nowait(ev)

    _Page()
    chat = ChatSession(conversation=conv, user="local")  # type: ignore[arg-type]
    closed: set[str] = (
        set()
    )  # sockets closed: Socket.IO no longer has them, whether or not on_chat_end ran yet
    chat.handover = Handover(connected=lambda sid: sid not in closed)
    pump = chat.task = asyncio.ensure_future(chat._pump(run()))  # type: ignore[arg-type]
    live, dropped, late, silent = _Page(), _Page(), _Page(), _Page()
    await chat.reattach(live.session)  # the page's live connection reaches the run first...
    await chat.reattach(dropped.session)  # ...then the one it dropped, whose handler was slower
    await chat.page_left(dropped.session)
    await _chainlit_fixes._resume_thread(ChainlitEmitter(live.session), {"id": conv.thread_id, "steps": []})
    await chat.page_left(late.session)  # a page gone before its handler reached the run never takes it
    await chat.reattach(late.session)
    closed.add(str(silent.session.socket_id))  # closed before its chat had a session to tell (no page_left)
    await chat.reattach(silent.session)
    emit(MessageEvent(source="risk", content="Too concentrated", turn=1))
    await live.until(lambda: live.steps("risk"), "the run's next message")
    assert not dropped.steps("risk") and not late.steps("risk") and not silent.steps("risk")

    # The newest page leaving before it has the thread hands the run to the page before it.
    first, second = _Page(), _Page()
    await chat.reattach(first.session)
    await chat.reattach(second.session)
    await _chainlit_fixes._resume_thread(ChainlitEmitter(first.session), {"id": conv.thread_id, "steps": []})
    emit(MessageEvent(source="analyst", content="Growth is strong", turn=2))
    await chat.page_left(
        second.session
    )  # handed over in a task of its own (the leaving page's handler goes on)
    await first.until(lambda: first.steps("analyst"), "the run's message once the newer page left")
    assert not second.steps("analyst") and not live.steps("analyst")
    events.put_nowait(None)  # type: ignore[arg-type]
    await asyncio.wait_for(pump, 10)


def test_the_login_page_has_words_for_the_rate_limit_in_every_language_chainlit_ships() -> None:
    """The refusal's words come from .chainlit/translations (Chainlit's own mechanism): a language Chainlit adds,
    or a file regenerated without parley's key, would show the login page a bare key instead."""
    import json

    from chainlit.config import TRANSLATIONS_DIR

    from parley.web._ratelimit import PAGE_KEY, REFUSAL

    ours = Path(__file__).resolve().parents[1] / ".chainlit" / "translations"
    shipped = sorted(p.name for p in Path(TRANSLATIONS_DIR).glob("*.json"))
    assert shipped, "Chainlit ships no translations any more: check how its login page words its errors"
    for name in shipped:
        translation = json.loads((ours / name).read_text(encoding="utf-8"))
        assert translation["auth"]["login"]["errors"][PAGE_KEY] == REFUSAL, name


async def test_a_note_a_role_adds_opens_the_notes_panel_live_and_reads_as_a_note_when_reopened() -> None:
    class Board:
        def __init__(self) -> None:
            self.history: list[Event] = []
            self.thread_id = "t4"
            self.notes_board = [{"role": "analyst", "text": "Q3 is down 4%"}]

    page = _Page()
    chat = ChatSession(conversation=Board(), user="local")  # type: ignore[arg-type]
    added = NoteEvent(source="analyst", content="Q3 is down 4%")
    await chat.show(added)
    (message,) = [d for e, d in page.sent if e == "new_message"]
    assert "**analyst** added to the Team notes (1)" in message["output"]
    # The board goes with the message as a side element (Chainlit opens the side panel with it).
    board = await page.until(lambda: [d for e, d in page.sent if e == "element"], "the board's element")
    assert board[0]["display"] == "side" and board[0]["forId"] == message["id"]
    assert "Q3 is down 4%" in _text_of(board[0]["url"])
    assert ("set_sidebar_title", "Team notes · 1") in page.sent
    await chat.show(added)  # the same board again (the page reopened): shown once
    assert len([e for e, _ in page.sent if e == "new_message"]) == 1
    (step,), (element,) = thread_view("t4", [added])
    assert step["output"] == "**analyst** added to the Team notes: *Q3 is down 4%*"
    assert element["display"] == "side" and element["name"] == "Team notes" and element["forId"] == step["id"]
    assert "**analyst**: Q3 is down 4%" in _text_of(element["url"])


def _text_of(url: str) -> str:
    head, _, data = url.partition(",")
    assert head.startswith("data:text/plain") and head.endswith(";base64"), head
    return base64.b64decode(data).decode()


async def test_a_decision_is_the_same_message_live_and_in_the_reopened_thread() -> None:
    """A page that reopens the thread while the run waits shows the stored card: the run must go on changing that
    very message (its buttons, then the decision), not one only the first page had."""
    page = _Page()
    conv = _Conversation()
    chat = ChatSession(conversation=conv, user="local")  # type: ignore[arg-type]
    request = ApprovalRequestEvent(
        source="billing", name="issue_refund", arguments={"order_id": 7}, request_id="r7"
    )
    subtask = SubtaskEvent(source="lead", subtask_id="s7", worker="writer", task="Draft", status="started")
    for ev in (request, subtask):
        await chat.show(ev)
    live = [d["id"] for e, d in page.sent if e == "new_message"]
    assert live == [s["id"] for s in thread_steps(conv.thread_id, [request, subtask])]
    assert live == [card_step_id(conv.thread_id, "r7"), card_step_id(conv.thread_id, "s7")]


# -- reopened threads: pictures, downloads, usage charts and the meter come back --------------------------------


def _run_with_files(tid: str, workspace: Path) -> list[Event]:
    (workspace / "charts").mkdir(parents=True)
    (workspace / "decks").mkdir()
    (workspace / "charts" / "q3.png").write_bytes(avatar_png("analyst"))
    (workspace / "decks" / "q3.pptx").write_bytes(b"PK\x03\x04 a deck")

    def wrote(name: str, mime: str, path: Path) -> FileEvent:
        return FileEvent(
            source="analyst", content="", name=name, path=str(path), mime=mime, size=10, tool="t", turn=1
        )

    events: list[Event] = [
        RunStartedEvent(
            source="user", content="", team="deck", model="m", pattern="round_robin", roles=["analyst"]
        ),
        HumanMessageEvent(source="user", content="Make the deck", mode="task"),
        UsageEvent(
            source="analyst",
            content="",
            model="m",
            prompt_tokens=100,
            completion_tokens=20,
            total_prompt_tokens=100,
            total_completion_tokens=20,
            cost_usd=0.5,
        ),
        wrote("charts/q3.png", "image/png", workspace / "charts" / "q3.png"),
        wrote("decks/q3.pptx", PPTX, workspace / "decks" / "q3.pptx"),
        # A stored event naming a file outside the workspace (or gone) never reads it.
        wrote("../../secret.txt", "text/plain", Path("/etc/passwd")),
        wrote("charts/gone.png", "image/png", workspace / "charts" / "gone.png"),
        MessageEvent(source="analyst", content="Done", turn=1),
        RunResult(stop_reason="completed", turns=1, prompt_tokens=100, completion_tokens=20, cost_usd=0.5),
    ]
    return events


PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


def test_a_reopened_thread_gets_back_its_pictures_downloads_chart_and_meter(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    tid = str(uuid.uuid4())
    events = _run_with_files(tid, tmp_path / "workspaces" / tid)
    steps, elements = thread_view(tid, events)
    by_id = {s["id"]: s for s in steps}
    picture, deck, chart, meter = elements
    assert picture["type"] == "image" and picture["name"] == "charts_q3.png"
    assert base64.b64decode(picture["url"].split(",", 1)[1]) == avatar_png("analyst")
    assert "wrote `charts/q3.png`" in by_id[picture["forId"]]["output"]
    # A deck is a download: sent as bytes no browser would render, under its name.
    assert deck["type"] == "file" and deck["name"] == "decks_q3.pptx"
    assert deck["url"].startswith("data:application/octet-stream;base64,") and deck["display"] == "inline"
    assert base64.b64decode(deck["url"].split(",", 1)[1]) == b"PK\x03\x04 a deck"
    # The run's usage chart under its "Run ended" message, as live.
    assert chart["name"] == "tokens-per-speaker.svg" and "Run ended" in by_id[chart["forId"]]["output"]
    assert "analyst" in base64.b64decode(chart["url"].split(",", 1)[1]).decode()
    # The meter last: the side panel opens titled by it.
    assert meter["display"] == "side" and meter["name"] == "Meter · 120 tokens · $0.5000"
    assert "**100** prompt + **20** completion tokens · $0.5000" in _text_of(meter["url"])
    assert "last run" in _text_of(meter["url"])


def test_a_reopened_threads_files_come_only_from_its_own_workspace(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    tid = str(uuid.uuid4())
    events = _run_with_files(tid, tmp_path / "workspaces" / tid)
    # Another thread's events cannot read this one's files, nor can an id that is not the server's own.
    other = str(uuid.uuid4())
    assert [e["type"] for e in thread_view(other, events)[1]] == ["image", "text"]  # the chart and the meter
    assert [e["type"] for e in thread_view("../" + tid, events)[1]] == ["image", "text"]
    steps, elements = thread_view(tid, events)
    names = [e["name"] for e in elements]
    assert "secret.txt" not in " ".join(names) and "charts_gone.png" not in names
    (gone,) = [s for s in steps if "charts/gone.png" in s["output"]]
    assert gone["output"].endswith("*No longer in the conversation's workspace.*")


async def test_the_live_meter_stays_in_the_side_panel_and_replaces_the_reopened_one() -> None:
    class Metered:
        thread_id = "t9"

        class meter:
            @staticmethod
            def by_source() -> dict[str, tuple[int, int]]:
                return {"selector": (7, 1)}

    page = _Page()
    meter = Meter()
    notes = NotesPanel(meter)
    await meter.update(100, 20, None, Metered())  # type: ignore[arg-type]
    await meter.finish(150, 30, 0.25, Metered())  # type: ignore[arg-type]
    meter.reset()  # the next run: its meter replaces the last run's (one meter on the page)
    await meter.update(1, 2, None, Metered())  # type: ignore[arg-type]
    await notes.show(
        "planner", [{"author": "planner", "text": "ship it"}]
    )  # the board goes to the panel last
    await meter.finish(5, 6, None, Metered())  # type: ignore[arg-type]
    sent = [(e, d) for e, d in page.sent if e in ("element", "remove_element") and "meter" in d["id"]]
    assert [(e, d["id"]) for e, d in sent] == [
        ("remove_element", "t9-meter"),  # the reopened thread's meter, if the page shows one
        ("element", "t9-meter-1"),
        ("element", "t9-meter-1"),  # still the panel's last element: replaced where it is, one socket event
        ("remove_element", "t9-meter"),
        ("remove_element", "t9-meter-1"),
        ("element", "t9-meter-2"),
        ("remove_element", "t9-meter-2"),  # the notes' board came after it: the meter goes last again
        ("element", "t9-meter-3"),
    ]
    last = sent[2][1]
    assert last["display"] == "side" and last["name"] == "Meter · 180 tokens · $0.2500"
    assert "**150** prompt + **30** completion tokens (selector 8) · $0.2500" in _text_of(last["url"])
    assert "last run" in _text_of(last["url"])


def test_a_reopened_thread_shows_approvals_and_tool_steps_as_the_live_view_does() -> None:
    def asks(rid: str) -> ApprovalRequestEvent:
        return ApprovalRequestEvent(source="billing", name="issue_refund", arguments={"n": 1}, request_id=rid)

    def calls(cid: str) -> ToolCallEvent:
        return ToolCallEvent(source="billing", name="issue_refund", arguments={"n": 1}, call_id=cid, turn=2)

    events: list[Event] = [
        asks("r1"),
        calls("c1"),  # waits for approval: not "used" yet
        ApprovalDecisionEvent(
            source="dana", name="issue_refund", request_id="r1", approved=True, actor="dana", turn=2
        ),
        ToolResultEvent(
            source="billing", name="issue_refund", call_id="c1", content="refunded\nto a@b.example"
        ),
        MessageEvent(source="billing", content="refunded\nto a@b.example", kind="tool_summary", turn=2),
        asks("r2"),
        calls("c2"),
        ApprovalDecisionEvent(  # the run ended while it waited
            source="parley",
            name="issue_refund",
            request_id="r2",
            approved=False,
            actor="parley",
            content="cancelled",
            turn=2,
        ),
    ]
    steps = thread_steps("t5", events)
    assert [(s["type"], s["name"]) for s in steps] == [
        ("assistant_message", "parley"),  # the first card
        ("tool", "issue_refund"),  # shown once approved
        ("assistant_message", "parley"),  # approved by dana
        ("assistant_message", "billing"),
        ("assistant_message", "parley"),  # the second card; its call never ran: no step
    ]
    card, tool, decided, summary, cancelled = steps
    assert (
        tool["output"] == "refunded\nto a@b.example" and tool["language"] == "text"
    )  # plain text, lines kept
    assert "approved by dana" in decided["output"]
    assert "Used a tool: its result is in the step above." in summary["output"]
    assert "refunded" not in summary["output"]  # not repeated
    assert cancelled["output"].endswith("*Cancelled: nobody decided before the run was over.*")
    assert not card["output"].endswith("over.*")


def test_the_embedded_models_messages_stay_marked_demo_quality_when_reopened() -> None:
    def started(model: str) -> RunStartedEvent:
        return RunStartedEvent(
            source="user", content="", team="t", model=model, pattern="round_robin", roles=["a"]
        )

    said = MessageEvent(source="a", content="Revenue grew 12%.", turn=1)
    local, remote = (thread_steps("t6", [started(m), said])[-1]["output"] for m in ("local", "openai:gpt-4o"))
    assert local.endswith(DEMO_MARK) and "Revenue grew 12%." in local
    assert not remote.endswith(DEMO_MARK)


async def test_an_event_from_a_socket_whose_session_ended_is_dropped_without_a_traceback() -> None:
    """A page that reloads or leaves can have an event in flight (its favourites, say) when its session is deleted:
    Chainlit's handler would raise "Session not found" into the server's log. It is dropped, and never screened."""
    ran: list[str] = []
    screened: list[object] = []

    async def handler(sid: str, *args: Any) -> str:
        ran.append(sid)
        return "handled"

    async def screen(login: object, environ: object, thread: object) -> str | None:
        screened.append(login)
        return None

    wrapped = _chainlit_fixes._screened("fetch_favorites", handler, screen)
    assert await wrapped(f"gone-{uuid.uuid4()}") is None
    assert ran == [] and screened == []


async def test_an_event_whose_session_ends_while_it_is_screened_is_dropped_without_a_traceback() -> None:
    """The screen looks the login up in the store: a page that reloads meanwhile has its session deleted before
    Chainlit's handler runs, and the handler's "Session not found" went to the server's log as a traceback."""

    async def emit(*_: Any) -> None:
        return None

    sid = str(uuid.uuid4())
    session = WebsocketSession(
        id=str(uuid.uuid4()),
        socket_id=sid,
        emit=emit,  # pyright: ignore[reportArgumentType]
        emit_call=emit,  # pyright: ignore[reportArgumentType]
        user_env={},
        client_type="webapp",
    )
    ran: list[str] = []

    async def handler(sid: str, *args: Any) -> None:
        WebsocketSession.require(sid)  # as Chainlit's handlers begin
        ran.append(sid)

    async def screen(login: object, environ: object, thread: object) -> str | None:
        await session.delete()  # the page reloaded while the store answered
        return None

    wrapped = _chainlit_fixes._screened("fetch_favorites", handler, screen)
    assert await wrapped(sid) is None
    assert ran == []


async def test_chainlit_builds_messages_and_steps_without_pausing_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chainlit sleeps 1 ms in every message and step it builds, blocking the server's one event loop: two or three
    per agent message, a sixth of the loop's time at 200 conversations. The web chat takes the pause out."""
    assert (
        _chainlit_pause.check() == []
    )  # Chainlit still pauses so: the fix is still needed, and still applies
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    _chainlit_pause.install()
    _Page()  # a session's context to build them in
    cl.Message(content="a reply")
    cl.Step(name="a step")
    assert pauses == []
    _chainlit_pause._NoPause.sleep(0.2)  # a longer sleep is still one
    assert pauses == [0.2]
