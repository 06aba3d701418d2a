"""Thumbs up and down on agents' messages: every agent message can be rated, live and on the reopened thread, under
the same id; a rating is kept for the conversation's owner only, on an agent message of that conversation, shows
again when the thread is reopened, and is exported with the audit (who rated which message how).

The browser side (the thumbs on the page, a reload, raw requests to Chainlit's PUT /feedback) is in
tests/ui/test_feedback_browser.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from chainlit.context import init_ws_context
from chainlit.session import WebsocketSession
from chainlit.types import Feedback

from parley._audit import export
from parley.events import (
    ChunkEvent,
    Event,
    HumanMessageEvent,
    MessageEvent,
    RunResult,
    RunStartedEvent,
    TurnAbandonedEvent,
    ValidationEvent,
)
from parley.store import Store, default_url
from parley.web._chat import ChatSession
from parley.web._datalayer import ParleyDataLayer, thread_view
from parley.web._guard import LOGIN
from parley.web._handover import Handover
from parley.web._ratings import RUN_NAME, rated_steps, rating_id

STARTED = RunStartedEvent(
    source="user", content="", team="content-studio", model="m", pattern="round_robin", roles=["writer"]
)


def _run(tid: str) -> list[Event]:
    """A run with every kind of agent message: plain, a failed attempt and its correction, a turn cut short."""
    return [
        STARTED,
        HumanMessageEvent(source="user", content="Write about churn", mode="task"),
        MessageEvent(source="researcher", content="Churn costs five to seven times more.", turn=1),
        ValidationEvent(source="writer", passed=False, attempt=1, retries=2, problems=["no figure"], turn=2),
        MessageEvent(source="writer", content="Churn is the quiet leak: 5% a month.", turn=2),
        ValidationEvent(source="writer", passed=True, attempt=2, retries=2, turn=2),
        HumanMessageEvent(source="user", content="Shorter, please", mode="say", turn=2),
        TurnAbandonedEvent(source="editor", content="Clear and", reason="stopped by you", turn=3),
        RunResult(
            source="parley", stop_reason="stopped", turns=3, prompt_tokens=0, completion_tokens=0, cost_usd=0
        ),
    ]


def test_every_agent_message_sits_in_a_rating_step_of_its_own_and_nothing_else_does() -> None:
    tid = "t1"
    events = _run(tid)
    steps = rated_steps(tid, events, thread_view(tid, events)[0])
    runs = {s["id"]: s for s in steps if s["type"] == "run"}
    rated = [s for s in steps if s.get("parentId") in runs]
    assert [(s["name"], s["parentId"]) for s in rated] == [
        ("researcher", rating_id(tid, "researcher", 0)),
        ("writer", rating_id(tid, "writer", 0)),  # the failed attempt
        ("writer", rating_id(tid, "writer", 1)),  # its correction
        ("editor", rating_id(tid, "editor", 0)),  # cut short
    ]
    assert all(r["name"] == RUN_NAME and r["end"] for r in runs.values())  # ended: the page offers thumbs
    for message in rated:  # each right after its rating step (the page drops a child it has no parent for)
        assert steps[steps.index(message) - 1]["id"] == message["parentId"]
    # What the user typed, the notes and the closing line are not rated.
    unrated = [s for s in steps if s["type"] != "run" and s not in rated]
    assert [s["type"] for s in unrated if s["type"] == "user_message"] == ["user_message"] * 2
    assert any(s["output"].startswith("**Run ended**") for s in unrated)
    assert all(s["name"] not in ("researcher", "editor") for s in unrated)


class _Page:
    """What the web chat sends one browser session, without a browser."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

        async def emit(event: str, data: Any) -> None:
            self.sent.append((event, data))

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

    def tree(self) -> dict[str, str | None]:
        """Each step the page was sent (created or streamed) -> its parent."""
        return {d["id"]: d.get("parentId") for e, d in self.sent if e in ("new_message", "stream_start")}


class _Conversation:
    def __init__(self) -> None:
        self.history: list[Event] = []
        self.thread_id = str(uuid.uuid4())
        self.store = None  # not stored: nobody's access to look up

    def demo_quality(self, source: str) -> bool:
        return False


async def test_the_live_page_and_the_reopened_thread_rate_each_message_under_the_same_id() -> None:
    """The thumbs given live must still be on the message when the thread is reopened: the live page puts each
    message in the rating step the stored thread gives it, though a streamed message starts before its event
    (and its place in the history) exists."""
    page, conv = _Page(), _Conversation()
    stream: list[Event] = []
    for ev in _run(conv.thread_id):
        if isinstance(ev, MessageEvent | TurnAbandonedEvent) and ev.source != "researcher":
            # streamed first (the researcher's message arrives whole), a piece at a time
            stream += [ChunkEvent(source=ev.source, content=part, turn=ev.turn) for part in ("Chu", "rn")]
        stream.append(ev)

    async def run() -> AsyncIterator[Event]:
        for ev in stream:
            if not isinstance(ev, ChunkEvent):  # the history holds what is kept, chunks aside
                conv.history.append(ev)
            yield ev

    chat = ChatSession(conversation=conv, user="local")  # type: ignore[arg-type]
    await asyncio.wait_for(chat._pump(run()), 10)  # type: ignore[arg-type] # pyright: ignore[reportPrivateUsage]

    live = page.tree()
    live_runs = [i for e, d in page.sent if e == "new_message" and d["type"] == "run" for i in [d["id"]]]
    stored = rated_steps(conv.thread_id, conv.history, thread_view(conv.thread_id, conv.history)[0])
    assert live_runs == [s["id"] for s in stored if s["type"] == "run"]
    assert len(live_runs) == 4
    rated_live = sorted(p for p in live.values() if p is not None and p in live_runs)
    assert rated_live == sorted(live_runs)  # every rating step holds one message on the page too
    assert all(
        d["name"] == RUN_NAME and d["end"] for e, d in page.sent if e == "new_message" and d["type"] == "run"
    )
    # The closing line and the notes are not in a rating step (the page would rate them).
    notes = [d for e, d in page.sent if e == "new_message" and d["type"] == "assistant_message"]
    assert all(not d.get("parentId") for d in notes if "Run ended" in d["output"])


async def test_a_page_reopened_while_the_run_goes_on_shows_the_thumbs_as_they_were_left() -> None:
    """A reopened thread whose run is still going is sent what the run showed so far (from memory): the ratings
    read from the store go with it."""
    from chainlit.emitter import ChainlitEmitter

    from parley.web import _chainlit_fixes

    conv = _Conversation()
    events: asyncio.Queue[Event] = asyncio.Queue()
    shown = asyncio.Event()

    async def run() -> AsyncIterator[Event]:
        while True:
            ev = await events.get()
            conv.history.append(ev)
            yield ev
            shown.set()  # the page asks for the next event: this one is shown
            if isinstance(ev, RunResult):
                return

    _Page()
    chat = ChatSession(conversation=conv, user="local")  # type: ignore[arg-type]
    chat.handover = Handover(connected=lambda sid: True)  # these pages have no real sockets
    pump = asyncio.ensure_future(chat._pump(run()))  # type: ignore[arg-type] # pyright: ignore[reportPrivateUsage]
    said = MessageEvent(source="writer", content="Churn is the quiet leak.", turn=1)
    events.put_nowait(said)
    await asyncio.wait_for(shown.wait(), 10)
    rated = rating_id(conv.thread_id, "writer", 0)
    given = {"id": "f1", "forId": rated, "value": 0, "comment": "vague"}
    stored = {"id": conv.thread_id, "steps": [{"id": rated, "type": "run", "feedback": given}]}

    new = _Page()
    await chat.reattach(new.session)
    await _chainlit_fixes._resume_thread(ChainlitEmitter(new.session), stored)  # pyright: ignore[reportPrivateUsage]
    events.put_nowait(
        RunResult(
            source="parley",
            stop_reason="completed",
            turns=1,
            prompt_tokens=0,
            completion_tokens=0,
            cost_usd=0,
        )
    )
    await asyncio.wait_for(pump, 10)
    (thread,) = [d for e, d in new.sent if e == "resume_thread"]
    (step,) = [s for s in thread["steps"] if s["id"] == rated]
    assert step["type"] == "run" and step["feedback"] == given
    assert [s["parentId"] for s in thread["steps"] if s.get("name") == "writer"] == [rated]


@pytest.fixture
async def alices(store: Store) -> AsyncIterator[tuple[ParleyDataLayer, str, list[dict[str, Any]]]]:
    """A data layer on `store` with alice's conversation (the run above) and bob's, alice signed in."""

    async def get() -> Store:
        return store

    tid = await store.create_thread("alice", "content-studio", "local", "Alice's task")
    for ev in _run(tid):
        await store.append_event(tid, ev.type, ev.model_dump(mode="json"))
    layer = ParleyDataLayer(get)
    thread = await layer.get_thread(tid)
    assert thread is not None
    login = LOGIN.set("alice")
    try:
        yield layer, tid, [dict(s) for s in thread["steps"]]
    finally:
        LOGIN.reset(login)


async def test_a_rating_is_kept_with_its_message_and_shows_again_on_the_reopened_thread(
    store: Store, alices: tuple[ParleyDataLayer, str, list[dict[str, Any]]]
) -> None:
    layer, tid, _ = alices
    writer = rating_id(tid, "writer", 1)
    first = await layer.upsert_feedback(Feedback(forId=writer, value=1, threadId=tid))
    again = await layer.upsert_feedback(Feedback(forId=writer, value=0, threadId=tid, comment="too long"))
    assert first == again  # one rating per message: the latest
    (row,) = await store.feedback_of(tid)
    assert (row.step_id, row.value, row.comment, row.actor) == (writer, 0, "too long", "alice")
    assert row.message == "**writer** · turn 2\n\nChurn is the quiet leak: 5% a month."  # the message rated

    thread = await layer.get_thread(tid)
    assert thread is not None
    (step,) = [dict(s) for s in thread["steps"] if s.get("feedback")]
    assert step["id"] == writer  # the page reads the thumbs off the rating step
    assert step["feedback"] == {"id": first, "forId": writer, "value": 0, "comment": "too long"}

    assert await layer.delete_feedback(first)  # the thumb clicked again: taken back
    assert await store.feedback_of(tid) == []
    assert [a.detail["decision"] for a in await store.audit_log(tid) if a.action == "feedback"] == [
        "thumbs up",
        "thumbs down",
        "removed",
    ]


async def test_a_rating_is_refused_unless_it_is_the_owners_on_an_agent_message_of_that_conversation(
    store: Store, alices: tuple[ParleyDataLayer, str, list[dict[str, Any]]]
) -> None:
    layer, tid, steps = alices
    bobs = await store.create_thread("bob", "content-studio", "local", "Bob's task")
    await store.append_event(bobs, STARTED.type, STARTED.model_dump(mode="json"))
    said = MessageEvent(source="writer", content="Bob's draft", turn=1)
    await store.append_event(bobs, said.type, said.model_dump(mode="json"))
    rated = rating_id(tid, "writer", 0)
    user_step = next(s["id"] for s in steps if s["type"] == "user_message")
    message = next(s["id"] for s in steps if s.get("parentId") == rated)

    refused: list[tuple[str | None, Feedback, str]] = [
        (None, Feedback(forId=rated, value=1, threadId=tid), "sign in"),
        ("bob", Feedback(forId=rated, value=1, threadId=tid), "not yours"),  # alice's thread
        ("alice", Feedback(forId=rating_id(bobs, "writer", 0), value=1, threadId=bobs), "not yours"),
        ("alice", Feedback(forId=rating_id(bobs, "writer", 0), value=1, threadId=tid), "only an agent's"),
        ("alice", Feedback(forId=rated, value=1, threadId=str(uuid.uuid4())), "no such conversation"),
        ("alice", Feedback(forId=rated, value=1, threadId=""), "no such conversation"),
        ("alice", Feedback(forId=user_step, value=1, threadId=tid), "only an agent's"),
        (
            "alice",
            Feedback(forId=message, value=1, threadId=tid),
            "only an agent's",
        ),  # the message, not its step
        ("alice", Feedback(forId=rating_id(tid, "writer", 9), value=1, threadId=tid), "only an agent's"),
    ]
    for who, feedback, why in refused:
        LOGIN.set(who)
        with pytest.raises(ValueError, match=why):
            await layer.upsert_feedback(feedback)
    assert await store.feedback_of(tid) == [] and await store.feedback_of(bobs) == []
    assert not [a for t in (tid, bobs) for a in await store.audit_log(t) if a.action == "feedback"]

    LOGIN.set("alice")
    kept = await layer.upsert_feedback(Feedback(forId=rated, value=1, threadId=tid))
    LOGIN.set("bob")
    with pytest.raises(Exception, match="not bob's"):  # nor taken back by another user
        await layer.delete_feedback(kept)
    assert len(await store.feedback_of(tid)) == 1


async def test_the_audit_export_says_who_rated_which_message_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    store = await Store.open(default_url())
    try:

        async def get() -> Store:
            return store

        tid = await store.create_thread("alice", "content-studio", "local", "Alice's task")
        for ev in _run(tid):
            await store.append_event(tid, ev.type, ev.model_dump(mode="json"))
        login = LOGIN.set("alice")
        try:
            layer = ParleyDataLayer(get)
            await layer.upsert_feedback(
                Feedback(forId=rating_id(tid, "researcher", 0), value=1, threadId=tid)
            )
            await layer.upsert_feedback(
                Feedback(forId=rating_id(tid, "writer", 1), value=0, threadId=tid, comment="invents 5%")
            )
        finally:
            LOGIN.reset(login)
    finally:
        await store.close()

    assert await export(tid, "md") == 0
    table = [line for line in capsys.readouterr().out.splitlines() if "| feedback |" in line]
    assert len(table) == 2
    assert "| alice | feedback | thumbs up | message: **researcher** · turn 1 Churn costs five" in table[0]
    assert (
        "| alice | feedback | thumbs down | text: invents 5%; message: **writer** · turn 2 Churn is"
        in table[1]
    )

    assert await export(tid, "jsonl") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (up, down) = [r for r in rows if r["what"] == "feedback"]
    assert (down["who"], down["decision"], down["detail"]["text"]) == ("alice", "thumbs down", "invents 5%")
    assert down["detail"]["step"] == rating_id(tid, "writer", 1)
    assert down["detail"]["message"].endswith("Churn is the quiet leak: 5% a month.")
    assert (up["who"], up["decision"]) == ("alice", "thumbs up")


def test_chainlit_still_puts_thumbs_in_run_steps_named_as_its_own_handlers() -> None:
    """The rating steps rest on how Chainlit 2.x's page works (see parley/web/_ratings.py): a release that renames
    its handler runs, or its thumbs, fails here instead of quietly dropping the thumbs (or showing "Used …")."""
    import chainlit

    bundles = list((Path(chainlit.__file__).parent / "frontend" / "dist" / "assets").glob("index-*.js"))
    page = "".join(b.read_text(encoding="utf-8", errors="replace") for b in bundles)
    assert f'"on_chat_start","{RUN_NAME}","on_audio_end"' in page, (
        "Chainlit's page no longer names its runs so"
    )
    assert "positive-feedback-on" in page and "negative-feedback-off" in page, "Chainlit's thumbs changed"
