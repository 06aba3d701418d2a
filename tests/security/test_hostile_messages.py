"""Hostile messages through the Python API: the task, `say` and `interrupt` with text nobody should send.

Every message either gets a clear ConfigError before anything runs, or reaches the team and the
store exactly as sent, on SQLite and on PostgreSQL, and the conversation goes on afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _support import collect, team_yaml
from autogen_core.models import UserMessage

from parley import Conversation
from parley.errors import ConfigError
from parley.events import ChunkEvent, Event, HumanMessageEvent, MessageEvent, RunResult, event_adapter
from parley.store import Store

Write = Callable[[str, str], Path]

MEGABYTE = "Summarise this. " + "lorem ipsum dolor sit amet " * 38_836  # 1,048,588 characters
HOSTILE = {
    "one megabyte": MEGABYTE,
    "control characters": "NUL \x00 BEL \x07 ESC \x1b[2J\x1b]0;title\x07 DEL \x7f CR \r BS \x08 RLO \u202e LS \u2028 end",
    "HTML and JS": '<script>alert("x")</script><img src=x onerror="alert(1)"><iframe src="javascript:alert(2)">',
    "Markdown image to an internal address": "Look: ![x](http://127.0.0.1:9/secret?token=1) and [y](javascript:alert(1))",
    "SQL and format strings": "'; DROP TABLE events; -- {0} %s %(x)s ${HOME} \\x00",
}
EMPTY = ["", " ", "\n\t \r\n"]
SURROGATES = ["x\ud800y", "\udfff", "ok \ud83d"]  # halves of UTF-16 pairs: valid in Python, not in UTF-8
SCRIPT = """
    roles:
      alpha: ["Alpha one", "Alpha two", "Alpha three", "Alpha four"]
      beta: ["Beta one", "Beta two", "Beta three", "Beta four"]
    delay_s: 0.2
"""


async def _attached(write: Write, tmp_path: Path, db_url: str) -> tuple[Conversation, Store, str]:
    team = write("team.yaml", team_yaml(max_turns=2))
    conv = Conversation(team, model=f"scripted:{write('script.yaml', SCRIPT)}")
    db = await Store.open(db_url)
    tid = await db.create_thread("alice", conv.team.name, conv.model, "hostile input")
    conv.attach(db, tid)
    return conv, db, tid


def _seen_by(conv: Conversation, role: str) -> list[str]:
    """Every user message text the role's model calls received."""
    return [
        m.content
        for c in conv.pool.scripts[0].calls
        if c.who == role
        for m in c.messages
        if isinstance(m, UserMessage) and isinstance(m.content, str)
    ]


async def _stored_cleanly(db: Store, tid: str) -> list[Event]:
    """The thread's events, each one decoding, numbered 1, 2, 3... with no gap."""
    rows = await db.events(tid)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    return [event_adapter.validate_python(r.payload) for r in rows]


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_hostile_task_reaches_the_team_and_the_store_exactly(
    write: Write, tmp_path: Path, db_url: str, case: str
) -> None:
    text = HOSTILE[case]
    conv, db, tid = await _attached(write, tmp_path, db_url)
    try:
        events = await collect(conv.start(text))
        assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "max_turns"
        assert text.strip() in _seen_by(conv, "alpha")  # the model got it, byte for byte

        # A second run on the same conversation works, and the store holds everything, readable.
        follow_up = await collect(conv.start("Carry on"))
        assert follow_up[-1].stop_reason == "max_turns"  # type: ignore[union-attr]
        stored = await _stored_cleanly(db, tid)
        tasks = [e.content for e in stored if isinstance(e, HumanMessageEvent)]
        assert tasks == [text.strip(), "Carry on"]

        # Reopened (a server restart), the conversation has the text intact and continues.
        again = await Conversation.resume(db, tid, teams_dirs=[tmp_path])
        assert [e.content for e in again.history if isinstance(e, HumanMessageEvent)] == tasks
        assert (await collect(again.start("One more")))[-1].stop_reason == "max_turns"  # type: ignore[union-attr]
    finally:
        await conv.close()
        await db.close()


@pytest.mark.parametrize("mode", ["say", "interrupt"])
async def test_hostile_interjections_join_the_conversation_unchanged(
    write: Write, tmp_path: Path, db_url: str, mode: str
) -> None:
    conv, db, tid = await _attached(write, tmp_path, db_url)
    texts = [HOSTILE[c] for c in sorted(HOSTILE)]
    try:
        run = conv.start("Plan the launch")
        sent = False

        def on_event(ev: Event) -> None:
            nonlocal sent
            if isinstance(ev, ChunkEvent) and ev.source == "alpha" and not sent:
                sent = True
                for text in texts:
                    (run.say if mode == "say" else run.interrupt)(text)

        events = await collect(run, on_event)
        assert events[-1].stop_reason == "max_turns"  # type: ignore[union-attr]
        joined = [e.content for e in events if isinstance(e, HumanMessageEvent) and e.mode == mode]
        assert joined == [t.strip() for t in texts]
        seen = _seen_by(conv, "beta") if mode == "say" else _seen_by(conv, "alpha")
        assert all(t.strip() in seen for t in texts)  # the next speaker read every one of them
        stored = await _stored_cleanly(db, tid)
        assert [e.content for e in stored if isinstance(e, HumanMessageEvent) and e.mode == mode] == joined
        assert sum(isinstance(e, MessageEvent) for e in stored) == 2
    finally:
        await conv.close()
        await db.close()


@pytest.mark.parametrize("text", EMPTY, ids=["empty", "space", "whitespace"])
async def test_an_empty_message_is_refused_with_a_clear_error(
    write: Write, tmp_path: Path, db_url: str, text: str
) -> None:
    conv, db, tid = await _attached(write, tmp_path, db_url)
    try:
        with pytest.raises(ConfigError, match="the task is empty"):
            conv.start(text)
        with pytest.raises(ConfigError, match="the task is empty"):
            conv.say(text)
        assert await db.events(tid) == []  # nothing started, nothing stored
        run = conv.start("Plan the launch")
        refusals: list[str] = []

        def on_event(ev: Event) -> None:
            if isinstance(ev, ChunkEvent) and not refusals:
                for command in (run.say, run.interrupt):
                    with pytest.raises(ConfigError, match="an empty message cannot be sent") as err:
                        command(text)
                    refusals.append(str(err.value))

        events = await collect(run, on_event)
        assert len(refusals) == 2
        assert events[-1].stop_reason == "max_turns"  # type: ignore[union-attr]  # the run went on regardless
        stored = await _stored_cleanly(db, tid)
        assert [e.content for e in stored if isinstance(e, HumanMessageEvent)] == ["Plan the launch"]
    finally:
        await conv.close()
        await db.close()


@pytest.mark.parametrize("text", SURROGATES, ids=["inside", "alone", "half an emoji"])
async def test_a_lone_surrogate_is_refused_before_anything_runs(
    write: Write, tmp_path: Path, db_url: str, text: str
) -> None:
    """Half of a UTF-16 pair is valid in Python and in a browser's JSON, but no UTF-8 database or model takes it."""
    conv, db, tid = await _attached(write, tmp_path, db_url)
    try:
        with pytest.raises(ConfigError, match=r"not valid text"):
            conv.start(text)
        assert (
            await db.events(tid) == [] and conv.pool.scripts[0].calls == []
        )  # nothing stored, no model call
        run = conv.start("Plan the launch")
        refused = False

        def on_event(ev: Event) -> None:
            nonlocal refused
            if isinstance(ev, ChunkEvent) and not refused:
                for command in (run.say, run.interrupt):
                    with pytest.raises(ConfigError, match=r"not valid text"):
                        command(text)
                refused = True

        events = await collect(run, on_event)
        assert refused and events[-1].stop_reason == "max_turns"  # type: ignore[union-attr]
        assert (await collect(conv.start("Carry on")))[-1].stop_reason == "max_turns"  # type: ignore[union-attr]
        assert [e.content for e in await _stored_cleanly(db, tid) if isinstance(e, HumanMessageEvent)] == [
            "Plan the launch",
            "Carry on",
        ]
    finally:
        await conv.close()
        await db.close()
