"""The store, against SQLite and PostgreSQL alike.

PostgreSQL tests use a fresh database per session (`parley_test_<random>`, dropped at the end) on
the server at PARLEY_TEST_PG_URL (default: local trust auth); they skip when it is not reachable.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from parley.events import MessageEvent, RunResult, RunStartedEvent, ToolCallEvent, event_adapter
from parley.paths import data_dir
from parley.store import Store, StoreError, default_url
from parley.store._driver import DriverStatement
from parley.store._schema import users
from parley.store._urls import normalise_url, redact

# -- users -------------------------------------------------------------------------------


async def test_users_are_hashed_verified_and_unique(store: Store) -> None:
    assert await store.count_users() == 0
    await store.create_user("alice", "correct horse")
    await store.create_user("bob", "correct horse")
    assert await store.count_users() == 2

    assert await store.verify_user("alice", "correct horse")
    assert not await store.verify_user("alice", "correct horsE")
    assert not await store.verify_user("alice", "")
    assert not await store.verify_user("nobody", "correct horse")

    async with store._engine.connect() as conn:  # look at the raw rows: what an attacker with the DB sees
        stored = dict((await conn.execute(select(users.c.name, users.c.password_hash))).all())
    assert set(stored) == {"alice", "bob"}
    for hashed in stored.values():
        assert "correct horse" not in hashed
        assert hashed.startswith("scrypt$")
    assert stored["alice"] != stored["bob"], "same password, different salt, different hash"

    with pytest.raises(StoreError, match=r"'alice'.*taken"):
        await store.create_user("alice", "another password")
    with pytest.raises(StoreError, match="at least 8 characters"):
        await store.create_user("carol", "short")
    with pytest.raises(StoreError, match="name is empty"):
        await store.create_user("  ", "long enough")
    for reserved in ("local", "Local"):  # the single-user mode's user owns the CLI's and pre-login runs
        with pytest.raises(StoreError, match="local single-user mode's user"):
            await store.create_user(reserved, "long enough")
    for odd in ("eve\n", " eve", "e\x00ve"):
        with pytest.raises(StoreError, match="control characters"):
            await store.create_user(odd, "long enough")
    assert await store.count_users() == 2
    assert await store.verify_user("alice", "correct horse"), "the failed duplicate left alice alone"


# -- threads -----------------------------------------------------------------------------


async def test_each_change_to_a_user_gives_their_logins_a_new_stamp(store: Store) -> None:
    """The web chat signs a user's login stamp into their cookie: `users add`, `passwd` and `remove` replace it, so
    a login made before any of them no longer matches."""
    assert await store.login_stamp("alice") is None  # no such user
    await store.create_user("alice", "correct horse")
    await store.create_user("bob", "battery staple")
    first = await store.login_stamp("alice")
    assert first and first != await store.login_stamp("bob")
    assert await store.sign_in("alice", "correct horse") == first
    assert await store.sign_in("alice", "correct horsE") is None
    assert await store.sign_in("nobody", "correct horse") is None

    await store.set_password("alice", "new password 2")
    second = await store.login_stamp("alice")
    assert second not in (None, first)
    assert await store.sign_in("alice", "new password 2") == second
    assert await store.sign_in("alice", "correct horse") is None

    bobs = await store.login_stamp("bob")
    await store.remove_user("alice")
    assert await store.login_stamp("alice") is None
    assert await store.sign_in("alice", "new password 2") is None
    await store.create_user("alice", "correct horse")  # the same name, the same first password
    third = await store.login_stamp("alice")
    assert third not in (None, first, second)
    assert await store.login_stamp("bob") == bobs, "one user's change leaves the others' logins alone"
    with pytest.raises(StoreError, match="no such user"):
        await store.set_password("carol", "long enough")


async def test_a_store_made_before_login_stamps_gets_them_and_keeps_its_users(db_url: str) -> None:
    """An older store has no `logins` table: opening it adds one. Its users keep the logins they hold (stamp ""
    on both sides) until their next change."""
    async with await Store.open(db_url) as old:
        await old.create_user("alice", "correct horse")
        async with old._engine.begin() as conn:
            await conn.execute(text("DROP TABLE logins"))
    async with await Store.open(db_url) as upgraded:
        assert await upgraded.login_stamp("alice") == ""
        assert await upgraded.sign_in("alice", "correct horse") == ""
        await upgraded.set_password("alice", "new password 2")
        assert await upgraded.login_stamp("alice") not in (None, "")


async def test_threads_per_owner_newest_first(store: Store) -> None:
    before = datetime.now(UTC)
    t1 = await store.create_thread("alice", "debate", "local", "first")
    t2 = await store.create_thread("alice", "debate", "openai:gpt-4o-mini", "second")
    t3 = await store.create_thread("alice", "review", "local", "third")
    tb = await store.create_thread("bob", "debate", "local", "bob's")
    after = datetime.now(UTC)

    assert len({t1, t2, t3, tb}) == 4 and all(len(t) == 32 and int(t, 16) >= 0 for t in (t1, t2, t3))
    assert [t.id for t in await store.list_threads("alice")] == [t3, t2, t1]
    assert [t.id for t in await store.list_threads("bob")] == [tb]
    assert await store.list_threads("carol") == []
    assert [t.id for t in await store.list_threads("alice", limit=2)] == [t3, t2]

    row = await store.get_thread(t2)
    assert row is not None
    assert (row.owner, row.team, row.model, row.title) == ("alice", "debate", "openai:gpt-4o-mini", "second")
    assert row.created_at.tzinfo is not None and row.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before <= row.created_at == row.updated_at <= after
    assert row in await store.list_threads("alice"), "read alone or listed, a thread is the same row"
    assert await store.get_thread("0" * 32) is None

    await store.append_event(t1, "message", {"content": "hi"})  # activity moves a thread to the top
    assert [t.id for t in await store.list_threads("alice")] == [t1, t3, t2]
    await store.rename_thread(t2, "Q3 sales — by région")
    renamed = await store.get_thread(t2)
    assert renamed is not None and renamed.title == "Q3 sales — by région"
    assert renamed.updated_at > row.updated_at
    assert [t.id for t in await store.list_threads("alice")] == [t2, t1, t3]


async def test_a_thread_id_taken_already_is_refused_and_the_first_thread_kept(store: Store) -> None:
    tid = "a" * 32
    assert await store.create_thread("alice", "debate", "local", "first", thread_id=tid) == tid
    with pytest.raises(
        StoreError, match=f"could not create a thread for 'mallory': thread {tid} exists already"
    ):
        await store.create_thread("mallory", "review", "local", "second", thread_id=tid)
    row = await store.get_thread(tid)
    assert row is not None and (row.owner, row.team, row.title) == ("alice", "debate", "first")
    assert [t.id for t in await store.list_threads("mallory")] == []


async def test_delete_thread_removes_events_and_checkpoints_only(store: Store) -> None:
    keep = await store.create_thread("alice", "debate", "local", "keep")
    gone = await store.create_thread("alice", "debate", "local", "gone")
    for tid in (keep, gone):
        await store.append_event(tid, "message", {"content": tid})
        await store.save_checkpoint(tid, 1, {"agent_states": {}}, [])
        await store.audit(tid, "alice", "approve", {"tool": "sql"})

    await store.delete_thread(gone)
    assert await store.get_thread(gone) is None
    assert await store.events(gone) == []
    assert await store.latest_checkpoint(gone) is None
    assert [t.id for t in await store.list_threads("alice")] == [keep]
    assert [a.action for a in await store.audit_log(gone)] == ["approve"], "audit is append-only"
    assert [e.payload for e in await store.events(keep)] == [{"content": keep}]
    assert await store.latest_checkpoint(keep) is not None

    with pytest.raises(StoreError, match=f"delete thread {gone}: no such thread"):
        await store.delete_thread(gone)
    with pytest.raises(StoreError, match="no such thread"):
        await store.rename_thread(gone, "x")


# -- events ------------------------------------------------------------------------------


async def test_events_round_trip_in_order(store: Store) -> None:
    tid = await store.create_thread("alice", "analysts", "local", "Q3")
    sent = [
        RunStartedEvent(
            source="parley", team="analysts", model="local", pattern="selector", roles=["a", "b"]
        ),
        ToolCallEvent(
            source="a",
            name="query",
            arguments={"sql": "select 1", "opts": {"rows": [1, 2]}},
            call_id="call_1",
            turn=1,
        ),
        MessageEvent(source="a", content="Régions: EU ✓, US ✗\nnext line", turn=1),
        RunResult(
            source="parley",
            stop_reason="max_turns",
            turns=1,
            prompt_tokens=10,
            completion_tokens=5,
            cost_usd=None,
            undelivered=["later"],
        ),
    ]
    seqs = [await store.append_event(tid, ev.type, ev.model_dump(mode="json")) for ev in sent]
    assert seqs == [1, 2, 3, 4]

    rows = await store.events(tid)
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert [r.type for r in rows] == ["run_started", "tool_call", "message", "result"]
    assert [event_adapter.validate_python(r.payload) for r in rows] == sent
    assert all(r.created_at.tzinfo is not None for r in rows)
    assert [r.seq for r in await store.events(tid, after_seq=2)] == [3, 4]
    assert await store.events(tid, after_seq=4) == []

    other = await store.create_thread("alice", "analysts", "local", "other")
    assert await store.append_event(other, "message", {}) == 1, "numbering is per thread"
    assert [r.seq for r in await store.events(tid)] == [1, 2, 3, 4]


async def test_concurrent_appends_get_unique_gap_free_seqs(store: Store) -> None:
    one = await store.create_thread("alice", "debate", "local", "busy")
    two = await store.create_thread("alice", "debate", "local", "also busy")
    results = await asyncio.gather(
        *(store.append_event(one, "chunk", {"i": i}) for i in range(50)),
        *(store.append_event(two, "chunk", {"i": i}) for i in range(20)),
    )
    assert sorted(results[:50]) == list(range(1, 51))
    assert sorted(results[50:]) == list(range(1, 21))

    rows = await store.events(one)
    assert [r.seq for r in rows] == list(range(1, 51))
    assert sorted(r.payload["i"] for r in rows) == list(range(50))
    # Each append returned the seq its own payload was stored under.
    by_seq = {r.seq: r.payload["i"] for r in rows}
    assert all(by_seq[seq] == i for i, seq in enumerate(results[:50]))


async def test_failed_writes_raise_and_leave_data_intact(store: Store) -> None:
    tid = await store.create_thread("alice", "debate", "local", "t")
    assert await store.append_event(tid, "message", {"n": 1}) == 1
    await store.save_checkpoint(tid, 1, {"ok": True}, [])

    with pytest.raises(StoreError, match=f"append a 'message' event to thread {tid}: ValueError"):
        await store.append_event(tid, "message", {"n": float("nan")})  # not JSON
    with pytest.raises(StoreError, match="TypeError: Object of type set"):
        await store.append_event(tid, "message", {"n": {1, 2}})
    assert await store.append_event(tid, "message", {"n": 2}) == 2, "the failed appends left no gap"
    assert [r.payload for r in await store.events(tid)] == [{"n": 1}, {"n": 2}]

    with pytest.raises(StoreError, match="save a checkpoint"):
        await store.save_checkpoint(tid, 2, {"bad": object()}, [])
    latest = await store.latest_checkpoint(tid)
    assert latest is not None and (latest.turn, latest.state) == (1, {"ok": True})

    missing = uuid.uuid4().hex
    with pytest.raises(StoreError, match="no such thread"):
        await store.append_event(missing, "message", {})
    with pytest.raises(StoreError, match="no such thread"):  # needs foreign keys on, on SQLite too
        await store.save_checkpoint(missing, 1, {}, [])


async def test_a_batch_is_written_whole_or_not_at_all(store: Store) -> None:
    """A run's batch (events, audit rows, a checkpoint) lands in one piece; one for a thread that is gone leaves
    nothing behind, not even the audit rows (which may name threads that no longer exist)."""
    tid = await store.create_thread("alice", "debate", "local", "t")
    batch = ([("message", {"n": 1}), ("message", {"n": 2})], [("alice", "approve", {"call": "c1"})])
    assert await store.append_batch(tid, *batch, (1, {"turn": 1}, ["later"])) == [1, 2]
    assert await store.append_batch(tid, [("message", {"n": 3})]) == [3]
    assert [r.payload["n"] for r in await store.events(tid)] == [1, 2, 3]
    assert [(r.actor, r.action, r.detail) for r in await store.audit_log(tid)] == [
        ("alice", "approve", {"call": "c1"})
    ]
    latest = await store.latest_checkpoint(tid)
    assert latest is not None and (latest.turn, latest.state, latest.pending) == (1, {"turn": 1}, ["later"])

    missing = uuid.uuid4().hex
    with pytest.raises(StoreError, match="no such thread"):
        await store.append_batch(missing, *batch, (1, {}, []))
    assert await store.audit_log(missing) == []
    assert (
        await store.append_batch(missing, [], [("alice", "deleted", {})]) == []
    )  # the trail outlives threads
    assert [r.action for r in await store.audit_log(missing)] == ["deleted"]


async def test_a_statement_cut_short_on_the_driver_gives_its_connection_up(db_url: str) -> None:
    """The store's most frequent PostgreSQL statements run on the driver itself (parley/store/_driver.py). One
    cancelled mid-statement (a stopped run's write) must not go back to the pool with its statement still being
    cancelled on the server: the next caller would wait on it. Its connection is closed instead."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the driver path is PostgreSQL's")
    store = await Store.open(db_url)
    admin = await asyncpg.connect(make_url(db_url).set(drivername="postgresql").render_as_string(False))
    try:
        async with store._read("test") as conn:
            row = await DriverStatement("SELECT pg_backend_pid()").row(conn, {})
            assert row is not None
            pid: int = row[0]
            sleeping = asyncio.ensure_future(
                DriverStatement("SELECT pg_sleep(CAST(:s AS float8))").row(conn, {"s": 60})
            )
            running = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%'"
            await _server_says(admin, running, pid, 1)
            sleeping.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sleeping
        # The connection was closed, not handed out again.
        await _server_says(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid, 0)
        assert await store.get_thread(uuid.uuid4().hex) is None  # and the store goes on, on a fresh one
    finally:
        await admin.close()
        await store.close()


async def test_each_read_on_the_driver_gives_what_sqlalchemys_path_gives(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a thread's events, its latest checkpoint, a user's access and the run's lease holder are read
    on the driver itself (parley/store/_history.py, _shares.py, _leases.py): the same rows, types and times (in UTC)
    as the portable query gives, which SQLite still runs."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the driver path is PostgreSQL's")
    from parley.store import _accounts, _history, _leases, _shares

    store = await Store.open(db_url)
    try:
        tid = await store.create_thread("alice", "analysts", "local", "Q3")
        idle = await store.create_thread("alice", "analysts", "local", "idle")
        for n in (1, 2, 3):
            await store.append_event(tid, "message", {"content": f"tour {n} — ✓", "turn": n, "n": [n, None]})
        await store.save_checkpoint(tid, 1, _team_state(1), [])
        await store.save_checkpoint(tid, 2, _team_state(2), ["and the US?"])
        for user in ("alice", "bob", "carol", "dave"):
            await store.create_user(user, "a long enough password")
        await store.share(tid, "bob", "read", actor="alice")
        await store.share(tid, "carol", "write", actor="alice")
        assert await store.take_lease(tid, "worker-1", 30.0) is not None

        async def reads() -> list[Any]:
            return [
                await store.events(tid),
                await store.events(tid, 2),
                await store.events(idle),
                await store.latest_checkpoint(tid),
                await store.latest_checkpoint(tid, up_to_turn=1),
                await store.latest_checkpoint(tid, up_to_turn=0),
                [await store.access(user, tid) for user in ("alice", "bob", "carol", "dave")],
                await store.access("alice", uuid.uuid4().hex),
                [await store.lease_holder(t) for t in (tid, idle)],
                [await store.login_stamp(user) for user in ("alice", "nobody")],
                await store.count_users(),
            ]

        on_driver = await reads()
        for module in (_accounts, _history, _shares, _leases):
            monkeypatch.setattr(module, "on_driver", lambda conn: False)
        assert on_driver == await reads()
        events, after_two, none, latest, first, _, roles, stranger, holders, stamps, count = on_driver
        assert [e.seq for e in events] == [1, 2, 3] and [e.seq for e in after_two] == [3] and none == []
        assert events[0].payload == {"content": "tour 1 — ✓", "turn": 1, "n": [1, None]}
        assert all(e.created_at.tzinfo is UTC for e in events)
        assert latest.turn == 2 and latest.pending == ["and the US?"] and latest.created_at.tzinfo is UTC
        assert first.turn == 1 and first.state == _team_state(1)
        assert roles == ["owner", "read", "write", None] and stranger is None
        assert holders == ["worker-1", None]
        assert stamps[0] and stamps[1] is None and count == 4
    finally:
        await store.close()


async def _server_says(admin: asyncpg.Connection, query: str, pid: int, count: int) -> None:
    """Wait (bounded) until PostgreSQL's own view counts `count` rows for `query` about backend `pid`."""
    async with asyncio.timeout(30):
        while True:
            if await admin.fetchval(query, pid) == count:
                return
            await asyncio.sleep(0.02)


# -- checkpoints -------------------------------------------------------------------------


def _team_state(turn: int) -> dict[str, Any]:
    """Shaped like AutoGen 0.7's SelectorGroupChat.save_state()."""
    user_msg = {
        "id": "m-1",
        "source": "user",
        "models_usage": None,
        "metadata": {},
        "created_at": "2025-06-01T10:00:00.000001Z",
        "content": "Summarise Q3 — € and ✓",
        "type": "TextMessage",
    }
    reply = {
        "id": f"m-{turn + 1}",
        "source": "analyst",
        "models_usage": {"prompt_tokens": 12, "completion_tokens": 3},
        "metadata": {},
        "created_at": "2025-06-01T10:00:01Z",
        "content": "EU up 4.5%",
        "type": "TextMessage",
    }
    return {
        "type": "TeamState",
        "version": "1.0.0",
        "agent_states": {
            "SelectorGroupChatManager_9f2c": {
                "type": "SelectorManagerState",
                "version": "1.0.0",
                "message_thread": [user_msg, reply],
                "current_turn": turn,
                "previous_speaker": "analyst",
            },
            "analyst_9f2c": {
                "type": "ChatAgentContainerState",
                "version": "1.0.0",
                "message_buffer": [],
                "agent_state": {
                    "type": "AssistantAgentState",
                    "version": "1.0.0",
                    "llm_context": {
                        "messages": [
                            {"content": "Summarise Q3", "source": "user", "type": "UserMessage"},
                            {
                                "content": [
                                    {"id": "call_1", "arguments": '{"region": "EU"}', "name": "query"}
                                ],
                                "thought": None,
                                "source": "analyst",
                                "type": "AssistantMessage",
                            },
                            {
                                "content": [
                                    {
                                        "content": "4.5",
                                        "name": "query",
                                        "call_id": "call_1",
                                        "is_error": False,
                                    }
                                ],
                                "type": "FunctionExecutionResultMessage",
                            },
                        ]
                    },
                },
            },
        },
    }


async def test_checkpoint_round_trip_and_latest(store: Store) -> None:
    tid = await store.create_thread("alice", "analysts", "local", "Q3")
    assert await store.latest_checkpoint(tid) is None
    await store.save_checkpoint(tid, 1, _team_state(1), [])
    await store.save_checkpoint(tid, 2, _team_state(2), ["and the US?", "also Asia"])

    latest = await store.latest_checkpoint(tid)
    assert latest is not None
    assert latest.turn == 2
    assert latest.state == _team_state(2)
    assert latest.pending == ["and the US?", "also Asia"]
    assert latest.created_at.tzinfo is not None

    other = await store.create_thread("alice", "analysts", "local", "other")
    assert await store.latest_checkpoint(other) is None


# -- audit -------------------------------------------------------------------------------


async def test_audit_trail_is_append_only_and_outlives_threads(store: Store) -> None:
    tid = await store.create_thread("alice", "ops", "local", "deploy")
    other = await store.create_thread("bob", "ops", "local", "other")
    await store.audit(tid, "alice", "approve", {"tool": "shell", "args": {"cmd": "ls"}, "why": "read-only"})
    await store.audit(None, "admin", "create_user", {"name": "bob"})
    await store.audit(other, "bob", "deny", {"tool": "shell", "why": "rm -rf"})
    await store.audit(tid, "alice", "escalate", {"choice": "ask_human"})

    mine = await store.audit_log(tid)
    assert [(a.actor, a.action) for a in mine] == [("alice", "approve"), ("alice", "escalate")]
    assert mine[0].detail == {"tool": "shell", "args": {"cmd": "ls"}, "why": "read-only"}
    assert mine[0].thread_id == tid and mine[0].created_at.tzinfo is not None
    everything = await store.audit_log()
    assert [a.action for a in everything] == ["approve", "create_user", "deny", "escalate"]
    assert [a.id for a in everything] == sorted(a.id for a in everything)
    assert everything[1].thread_id is None

    await store.delete_thread(tid)
    assert await store.audit_log(tid) == mine


# -- opening -----------------------------------------------------------------------------


async def test_data_survives_close_and_reopen(db_url: str) -> None:
    first = await Store.open(db_url)
    await first.create_user("alice", "correct horse")
    tid = await first.create_thread("alice", "debate", "local", "kept")
    for i in range(3):
        await first.append_event(tid, "message", {"i": i})
    await first.save_checkpoint(tid, 3, _team_state(3), ["queued"])
    await first.audit(tid, "alice", "approve", {})
    await first.close()

    async with await Store.open(db_url) as second:
        assert await second.verify_user("alice", "correct horse")
        assert [t.title for t in await second.list_threads("alice")] == ["kept"]
        assert [r.payload["i"] for r in await second.events(tid)] == [0, 1, 2]
        assert await second.append_event(tid, "message", {"i": 3}) == 4, "numbering continues"
        latest = await second.latest_checkpoint(tid)
        assert latest is not None and latest.state == _team_state(3) and latest.pending == ["queued"]
        assert [a.action for a in await second.audit_log(tid)] == ["approve"]


async def test_unreachable_postgresql_fails_fast_without_the_password() -> None:
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        await Store.open("postgresql+asyncpg://nobody:s3cret@127.0.0.1:1/x")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "cannot open database postgresql+asyncpg://nobody:***@127.0.0.1:1/x" in message
    assert "s3cret" not in message


async def test_silent_server_times_out() -> None:
    """A server that accepts connections but never answers: open() gives up at its timeout."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(StoreError, match=rf"127\.0\.0\.1:{port}/x: no answer within 0\.5 s"):
            await Store.open(f"postgresql://u:pw@127.0.0.1:{port}/x", timeout_s=0.5)
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_plain_sqlite_url_and_bad_paths(tmp_path: Path) -> None:
    async with await Store.open(f"sqlite:///{tmp_path / 'plain.db'}") as store:
        assert store._engine.url.drivername == "sqlite+aiosqlite"
        async with store._engine.connect() as conn:
            assert (await conn.scalar(text("PRAGMA journal_mode"))) == "wal"
            assert (await conn.scalar(text("PRAGMA foreign_keys"))) == 1
    with pytest.raises(StoreError, match=r"cannot open database sqlite.*no/such/dir.*OperationalError"):
        await Store.open(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}")
    with pytest.raises(StoreError, match="cannot use database"):
        await Store.open("nosuchdb://x/y")


async def test_a_batch_waits_for_another_process_holding_the_sqlite_write_lock(tmp_path: Path) -> None:
    import sqlite3

    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    tid = await store.create_thread("dana", "team", "model", "t")
    await store.append_event(tid, "message", {"n": 1})
    other = sqlite3.connect(tmp_path / "w.db", isolation_level=None)  # as another process would
    other.execute("BEGIN IMMEDIATE")
    writing = asyncio.create_task(store.append_batch(tid, [("message", {"n": 2})], (), (2, {"v": 2}, [])))
    await asyncio.sleep(0)  # the batch runs up to its first wait
    assert store._batches is not None and store._batches._queued is not None  # it waits in the thread
    assert not writing.done()
    other.execute("COMMIT")
    assert await writing == [2]
    assert [r.payload["n"] for r in await store.events(tid)] == [1, 2]
    checkpoint = await store.latest_checkpoint(tid)
    assert checkpoint is not None and checkpoint.turn == 2 and checkpoint.state == {"v": 2}
    other.close()
    await store.close()


async def test_in_memory_sqlite_serialises_on_its_one_connection() -> None:
    async with await Store.open("sqlite+aiosqlite://") as store:
        tid = await store.create_thread("alice", "debate", "local", "t")
        appended = asyncio.gather(*(store.append_event(tid, "chunk", {"i": i}) for i in range(30)))
        reads = asyncio.gather(*(store.events(tid) for _ in range(10)))
        seqs, snapshots = await asyncio.gather(appended, reads)
        assert sorted(seqs) == list(range(1, 31))
        assert all([r.seq for r in snap] == list(range(1, len(snap) + 1)) for snap in snapshots)


def test_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    assert default_url() == f"sqlite+aiosqlite:///{data_dir() / 'parley.db'}"
    monkeypatch.setenv("PARLEY_DATABASE_URL", "postgresql://app:pw@db/parley")
    assert default_url() == "postgresql://app:pw@db/parley"

    assert normalise_url("postgresql://app:pw@db/parley").drivername == "postgresql+asyncpg"
    assert normalise_url("postgres://app@db/parley").drivername == "postgresql+asyncpg"
    assert normalise_url("sqlite:////tmp/x.db").drivername == "sqlite+aiosqlite"
    assert normalise_url("sqlite+aiosqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert redact("postgresql://app:pw@db/parley") == "postgresql://app:***@db/parley"
