"""Conversations are stored as they happen and can be resumed from the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _support import collect, team_yaml
from autogen_core.models import UserMessage

from parley import Conversation, ToolRegistry, _publish
from parley._publish import Publisher
from parley.events import (
    ApprovalRequestEvent,
    ChunkEvent,
    ErrorEvent,
    Event,
    MessageEvent,
    RunResult,
    UsageEvent,
    event_adapter,
)
from parley.store import Store, StoreError

Write = Callable[[str, str], Path]


async def test_every_event_is_stored_and_a_new_process_resumes_it(
    write: Write, db_url: str, tmp_path: Path
) -> None:
    write(
        "risky/pay.py",
        '''
        from parley.tools import tool

        @tool(approval=True)
        def pay(amount: int) -> str:
            """Pay (needs approval)."""
            return f"paid {amount}"
    ''',
    )
    registry = ToolRegistry.discover([tmp_path / "risky"])
    team = write("team.yaml", team_yaml(roles=("alpha", "beta"), max_turns=3, tools={"alpha": ["pay"]}))
    script = write(
        "s.yaml",
        """
        roles:
          alpha:
            - tool: pay
              args: {amount: 5}
            - "Alpha continues after the restart"
          beta: ["Beta replies", "Beta closes"]
    """,
    )
    store = await Store.open(db_url)
    tid = await store.create_thread("dana", str(team), f"scripted:{script}", "Pay five")
    conv = Conversation(team, model=f"scripted:{script}", registry=registry)
    conv.attach(store, tid)

    def approve(ev: Event) -> None:
        if isinstance(ev, ApprovalRequestEvent):
            conv.current_run.approve(ev.request_id, actor="dana")  # type: ignore[union-attr]

    shown = await collect(conv.start("Pay five"), approve)
    assert shown[-1].stop_reason == "max_turns"  # type: ignore[union-attr]
    rows = await store.events(tid)
    stored = [event_adapter.validate_python(r.payload) for r in rows]
    assert [e for e in shown if not isinstance(e, ChunkEvent)] == stored  # written, in the order shown
    audit = await store.audit_log(tid)
    assert [(a.actor, a.action, a.detail.get("tool")) for a in audit] == [
        ("user", "task", None),
        ("alpha", "approval requested", "pay"),
        ("dana", "approve", "pay"),
    ]
    assert (await store.latest_checkpoint(tid)) is not None
    await store.close()

    # A new process: open the store again and continue the same conversation.
    store2 = await Store.open(db_url)
    resumed = await Conversation.resume(store2, tid, registry=registry, max_turns=1)
    assert resumed.turn == 3
    assert [e.content for e in resumed.history if isinstance(e, MessageEvent)] == [
        "paid 5",
        "Beta replies",
        "Alpha continues after the restart",
    ]
    more = await collect(resumed.start("One more thing"))
    assert [(e.source, e.content, e.turn) for e in more if isinstance(e, MessageEvent)] == [
        ("beta", "Beta closes", 4)
    ]
    beta_calls = [c for c in resumed.pool.scripts[0].calls if c.who == "beta"]
    seen = [m.content for m in beta_calls[-1].messages if isinstance(m, UserMessage)]
    assert any("Alpha continues after the restart" in str(s) for s in seen) and "One more thing" in seen
    assert len(await store2.events(tid)) > len(rows)
    await store2.close()


class _FailingStore(Store):
    """A store whose event writes start failing after a few, as when the disk fills up."""

    fail_after = 3
    """Events that still fit; a batch that does not fit fails whole (one transaction)."""

    async def append_batch(
        self, thread_id: str, new_events: Any, audits: Any = (), checkpoint: Any = None, *, fence: Any = None
    ) -> list[int]:
        if len(new_events) > self.fail_after:
            raise StoreError("cannot append event: OperationalError: database or disk is full")
        self.fail_after -= len(new_events)
        return await super().append_batch(thread_id, new_events, audits, checkpoint, fence=fence)


async def test_a_failed_write_stops_the_run_and_the_user_sees_it(write: Write, tmp_path: Path) -> None:
    team = write("team.yaml", team_yaml(max_turns=6))
    script = write("s.yaml", 'roles:\n  alpha: ["a1", "a2", "a3"]\n  beta: ["b1", "b2", "b3"]\n')
    store = await _FailingStore.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    tid = await store.create_thread("dana", "test-team", "scripted", "t")
    conv = Conversation(team, model=f"scripted:{script}")
    conv.attach(store, tid)
    shown = await collect(conv.start("Go"))
    errors = [e for e in shown if e.type == "error"]
    assert (
        errors
        and "saving the conversation failed" in errors[0].content
        and "disk is full" in errors[0].content
    )
    result = shown[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "error" and "disk is full" in result.detail
    stored = [r.payload for r in await store.events(tid)]
    assert 1 <= len(stored) <= 3  # what was written before the failure is intact: the events shown first
    assert [e["type"] for e in stored] == [e.type for e in shown if e.type != "chunk"][: len(stored)]
    await store.close()


async def test_a_resumed_conversation_keeps_its_team_notes(write: Write, store: Store) -> None:
    team = write(
        "team.yaml", team_yaml(roles=("alpha", "beta"), max_turns=2, tools={"alpha": ["team_notes"]})
    )
    script = write(
        "s.yaml",
        """
        roles:
          alpha: [{tool: team_notes, args: {action: add, text: "EMEA is the focus"}}]
          beta: ["noted"]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    tid = await store.create_thread("alice", conv.team.name, conv.model, "notes")
    conv.attach(store, tid)
    await conv.start("Plan").wait()
    assert [n["text"] for n in conv.notes_board] == ["EMEA is the focus"]
    again = await Conversation.resume(store, tid, model=f"scripted:{script}", teams_dirs=[team.parent])
    assert [(n["role"], n["text"]) for n in again.notes_board] == [("alpha", "EMEA is the focus")]


class _CountingStore(Store):
    """The real store, noting what each write carried: (event type or `checkpoint`, turn)."""

    writes: list[list[tuple[str, int]]]

    async def append_batch(
        self, thread_id: str, new_events: Any, audits: Any = (), checkpoint: Any = None, *, fence: Any = None
    ) -> list[int]:
        kept = [(kind, payload["turn"]) for kind, payload in new_events]
        self.writes.append(kept + ([("checkpoint", checkpoint[0])] if checkpoint is not None else []))
        return await super().append_batch(thread_id, new_events, audits, checkpoint, fence=fence)


async def _counting_store(tmp_path: Path) -> _CountingStore:
    store = await _CountingStore.open(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    assert isinstance(store, _CountingStore)
    store.writes = []
    return store


async def test_a_replys_usage_is_written_with_the_reply(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One write per reply instead of two. (The wait made long: no pause of a busy machine splits them here; the
    # message ends it.)
    monkeypatch.setattr(_publish, "USAGE_WAITS_S", 60.0)
    team = write("team.yaml", team_yaml(max_turns=4))
    script = write("s.yaml", 'roles:\n  alpha: ["a1", "a2"]\n  beta: ["b1", "b2"]\n')
    store = await _counting_store(tmp_path)
    conv = Conversation(team, model=f"scripted:{script}")
    conv.attach(store, await store.create_thread("dana", "test-team", "scripted", "Go"))
    shown = await collect(conv.start("Go"))
    assert [e.content for e in shown if isinstance(e, MessageEvent)] == ["a1", "b1", "a2", "b2"]
    usages = [(w, turn) for w in store.writes for kind, turn in w if kind == "usage"]
    assert [turn for _, turn in usages] == [1, 2, 3, 4]
    for w, turn in usages:  # (a write keeps one checkpoint, its last turn's: the team may have run ahead)
        assert ("message", turn) in w and any(k == "checkpoint" and t >= turn for k, t in w), store.writes
    await store.close()


async def test_a_usage_no_message_follows_is_written_and_shown_after_its_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A selector's call, or one whose answer is slow to come: the meter does not wait for it.
    monkeypatch.setattr(_publish, "USAGE_WAITS_S", 0.01)
    store = await _counting_store(tmp_path)
    tid = await store.create_thread("dana", "test-team", "scripted", "Go")

    def failed(exc: BaseException) -> ErrorEvent:
        raise AssertionError(f"the write failed: {exc}")

    publisher = Publisher([], store, tid, 1, failed)
    publisher.start()
    shown = publisher.subscribe()
    usage = UsageEvent(
        source="selector",
        model="m",
        prompt_tokens=5,
        completion_tokens=1,
        total_prompt_tokens=5,
        total_completion_tokens=1,
        cost_usd=None,
        turn=1,
    )
    publisher.emit(usage)
    assert await anext(shown) == usage
    assert store.writes == [[("usage", 1)]]
    result = await publisher.finish(
        RunResult(stop_reason="max_turns", turns=0, prompt_tokens=5, completion_tokens=1, cost_usd=None)
    )
    assert result.stop_reason == "max_turns" and store.writes[-1] == [("result", 0)]
    assert [r.payload["type"] for r in await store.events(tid)] == ["usage", "result"]
    await store.close()
