"""One owner per run: run leases in the store, taken over when their holder dies, and fenced so that a stale owner
can no longer write. On PostgreSQL (skipped with the reason when it is unreachable) and on a SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from parley._outbox import Checkpoint, persist
from parley.cluster import Lease, LeaseLost, Leases
from parley.events import ChunkEvent, HumanMessageEvent, MessageEvent
from parley.store import Store, StoreError
from parley.store._leases import run_leases

SHORT_TTL_S = 1.0
"""A lease that dies young: its holder stands for a process that died."""
WAIT_S = 15.0
"""The bound on every wait for the database's clock to pass a lease's expiry."""


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (bounded) for `check` to hold: the database's clock, not ours, decides when a lease expires."""
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"not within {WAIT_S:g} s: {what}")


async def _expired(leases: Leases, tid: str) -> None:
    async def gone() -> bool:
        return await leases.holder(tid) is None

    await _until(gone, f"the lease of {tid} expired")


@pytest.fixture
async def tid(store: Store) -> str:
    return await store.create_thread("alice", "team", "scripted", "leased")


@pytest.fixture
async def second(db_url: str) -> AsyncIterator[Store]:
    """Another process's store: its own engine and connections on the same database."""
    other = await Store.open(db_url)
    yield other
    await other.close()


def _batch(text: str) -> dict[str, object]:
    return {
        "new_events": [("message", {"type": "message", "source": "writer", "content": text})],
        "audits": [("alice", "interjection", {"decision": "delivered", "text": text})],
        "checkpoint": (1, {"v": 1, "said": text}, []),
    }


async def test_a_live_lease_keeps_others_out_until_it_expires_then_the_taker_gets_a_larger_fence(
    store: Store, second: Store, tid: str
) -> None:
    a, b = Leases(store, "worker-a", ttl_s=SHORT_TTL_S), Leases(second, "worker-b", ttl_s=30)
    first = await a.acquire(tid)
    assert first is not None and first.holder == "worker-a"
    assert await b.acquire(tid) is None
    assert await b.holder(tid) == "worker-a"

    await _expired(b, tid)
    taken = await b.acquire(tid)
    assert taken is not None and taken.fence > first.fence
    assert await a.holder(tid) == "worker-b"
    assert await a.acquire(tid) is None  # b's lease is live for 30 s
    again = await b.acquire(tid)
    assert again == taken  # re-acquiring one's own live lease keeps its fence


async def test_a_stale_owner_writes_nothing_once_taken_over_while_the_new_owner_writes(
    store: Store, second: Store, tid: str
) -> None:
    a, b = Leases(store, "worker-a", ttl_s=SHORT_TTL_S), Leases(second, "worker-b", ttl_s=30)
    old = await a.acquire(tid)
    assert old is not None
    assert await store.append_batch(tid, **_batch("before"), fence=old) == [1]  # type: ignore[arg-type]
    await _expired(b, tid)
    new = await b.acquire(tid)
    assert new is not None

    with pytest.raises(LeaseLost, match=f"no longer owns conversation {tid}: worker-b took it over"):
        await store.append_batch(tid, **_batch("stale"), fence=old)  # type: ignore[arg-type]
    with pytest.raises(LeaseLost):
        await persist(store, tid, [HumanMessageEvent(source="alice", content="stale")], 1, fence=old)

    assert await second.append_batch(tid, **_batch("after"), fence=new) == [2]  # type: ignore[arg-type]
    assert [(e.seq, e.payload["content"]) for e in await second.events(tid)] == [(1, "before"), (2, "after")]
    assert [row.detail["text"] for row in await second.audit_log(tid)] == ["before", "after"]
    checkpoint = await second.latest_checkpoint(tid)
    assert checkpoint is not None and checkpoint.state["said"] == "after"


async def test_persist_returns_the_seqs_of_the_events_it_stored_in_order(store: Store, tid: str) -> None:
    lease = await Leases(store, "worker-a").acquire(tid)
    items = [
        HumanMessageEvent(source="alice", content="go"),
        ChunkEvent(source="writer", content="dra"),
        MessageEvent(source="writer", content="draft"),
        Checkpoint(turn=1, state={"v": 1}, pending=[]),
    ]
    assert await persist(store, tid, items, 1, fence=lease) == [1, 2]
    assert await persist(store, tid, [ChunkEvent(source="writer", content="x")], 1, fence=lease) == []
    assert await persist(store, tid, [MessageEvent(source="writer", content="more")], 1) == [3]
    assert [e.type for e in await store.load_events(tid)] == ["human_message", "message", "message"]


async def test_a_released_lease_is_free_at_once_and_its_writes_are_refused(
    store: Store, second: Store, tid: str
) -> None:
    a, b = Leases(store, "worker-a", ttl_s=30), Leases(second, "worker-b", ttl_s=30)
    lease = await a.acquire(tid)
    assert lease is not None
    await a.release(lease)
    assert await b.holder(tid) is None
    assert not await a.renew(lease)
    with pytest.raises(LeaseLost, match="its lease was released"):
        await store.append_batch(tid, [("message", {"content": "late"})], fence=lease)
    again = await a.acquire(tid)
    assert again is not None and again.fence > lease.fence
    await a.release(again)
    taken = await b.acquire(tid)
    assert taken is not None and taken.fence > again.fence
    assert await store.events(tid) == []


async def test_renewing_a_lost_lease_fails_and_keep_tells_its_owner(
    store: Store, second: Store, tid: str
) -> None:
    a, b = Leases(store, "worker-a", ttl_s=SHORT_TTL_S), Leases(second, "worker-b", ttl_s=30)
    old = await a.acquire(tid)
    assert old is not None
    await _expired(b, tid)
    assert await b.acquire(tid) is not None
    assert not await a.renew(old)

    lost = asyncio.Event()
    keeper = a.keep(old, lost.set)
    async with asyncio.timeout(WAIT_S):
        await lost.wait()
    await keeper  # it ends by itself once the lease is lost


async def _expiry(store: Store, tid: str) -> datetime:
    async with store._engine.connect() as conn:  # pyright: ignore[reportPrivateUsage]
        found = await conn.scalar(select(run_leases.c.expires_at).where(run_leases.c.thread_id == tid))
    assert isinstance(found, datetime)
    return found


async def test_a_kept_lease_outlives_its_ttl_and_others_stay_out(
    store: Store, second: Store, tid: str
) -> None:
    ttl = 1.0
    a, b = Leases(store, "worker-a", ttl_s=ttl), Leases(second, "worker-b", ttl_s=30)
    lease = await a.acquire(tid)
    assert lease is not None
    first_expiry = await _expiry(store, tid)
    lost = asyncio.Event()
    keeper = a.keep(lease, lost.set)
    try:

        async def renewed_past_first_expiry() -> bool:
            return (await _expiry(store, tid) - first_expiry).total_seconds() > ttl

        await _until(renewed_past_first_expiry, "keep renewed the lease")
        assert await b.acquire(tid) is None
        assert await b.holder(tid) == "worker-a"
        assert not lost.is_set()
    finally:
        keeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await keeper


async def test_orphans_are_runs_whose_holder_died_mid_run_not_runs_it_finished(
    store: Store, second: Store
) -> None:
    tids = [await store.create_thread("alice", "team", "scripted", f"t{i}") for i in range(4)]
    died, finished, handed_over, live = tids
    dying = Leases(store, "worker-dying", ttl_s=SHORT_TTL_S)
    a = Leases(store, "worker-a", ttl_s=30)
    assert await dying.acquire(died) is not None
    done = await a.acquire(finished)
    assert done is not None
    await a.release(done, run_open=False)
    stopping = await a.acquire(handed_over)
    assert stopping is not None
    await a.release(stopping, run_open=True)  # a process stopping mid-run hands the run on
    assert await a.acquire(live) is not None

    await _expired(a, died)
    b = Leases(second, "worker-b", ttl_s=30)
    assert set(await b.orphans()) == {died, handed_over}
    assert await b.acquire(died) is not None
    assert await b.orphans() == [handed_over]


@pytest.mark.parametrize("expired_first", [False, True])
async def test_two_processes_racing_for_a_lease_leave_exactly_one_owner(
    store: Store, second: Store, expired_first: bool
) -> None:
    a, b = Leases(store, "worker-a", ttl_s=30), Leases(second, "worker-b", ttl_s=30)
    for i in range(5):
        tid = await store.create_thread("alice", "team", "scripted", f"race {i}")
        before = None
        if expired_first:
            before = await Leases(store, "worker-dead", ttl_s=SHORT_TTL_S).acquire(tid)
            await _expired(a, tid)
        won = [lease for lease in await asyncio.gather(a.acquire(tid), b.acquire(tid)) if lease is not None]
        assert len(won) == 1, won
        assert await a.holder(tid) == won[0].holder
        assert won[0].fence == (before.fence + 1 if before is not None else 1)


async def test_a_lease_goes_with_its_thread_and_a_missing_thread_has_none(store: Store, tid: str) -> None:
    a = Leases(store, "worker-a")
    assert await a.acquire(tid) is not None
    await store.delete_thread(tid)
    assert await a.holder(tid) is None
    with pytest.raises(StoreError, match="no such thread"):
        await a.acquire(tid)
    assert await a.orphans() == []


def test_a_lease_names_its_thread_holder_and_fence() -> None:
    lease = Lease("t1", "worker-a", 3)
    assert (lease.thread_id, lease.holder, lease.fence) == ("t1", "worker-a", 3)
    assert isinstance(LeaseLost("t1", "worker-b"), StoreError)


async def test_the_store_names_its_database_kind(store: Store, db_url: str) -> None:
    assert store.dialect == ("sqlite" if db_url.startswith("sqlite") else "postgresql")


async def test_every_kept_lease_is_renewed_in_one_statement_and_only_a_lost_one_is_let_go(
    store: Store, second: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker keeps a lease per run: two hundred runs made two hundred renewals every few seconds. They go in one
    statement; a lease another process took over is reported lost, the other kept."""
    tids = [await store.create_thread("alice", "team", "scripted", f"Task {n}") for n in range(2)]
    a, b = Leases(store, "worker-a", ttl_s=SHORT_TTL_S), Leases(second, "worker-b", ttl_s=30)
    leases = [await a.acquire(tid) for tid in tids]
    assert None not in leases
    batches: list[int] = []
    renew = store.renew_leases

    async def counted(kept: list[Lease], ttl_s: float) -> set[tuple[str, int]]:
        batches.append(len(kept))
        return await renew(kept, ttl_s)

    monkeypatch.setattr(store, "renew_leases", counted)
    lost = [asyncio.Event(), asyncio.Event()]
    keepers = [a.keep(lease, gone.set) for lease, gone in zip(leases, lost, strict=True) if lease is not None]
    try:

        async def renewed_together() -> bool:
            return 2 in batches

        await _until(renewed_together, "both leases renewed in one statement")
        assert a._kept and all(n <= 2 for n in batches)  # pyright: ignore[reportPrivateUsage]
        await store.release_lease(leases[0])  # as if let go: the next renewal finds it is no longer a's
        async with asyncio.timeout(WAIT_S):
            await lost[0].wait()
        await keepers[0]  # it ends by itself once the lease is lost
        assert not lost[1].is_set() and not keepers[1].done()
        assert await b.acquire(tids[1]) is None  # still a's
    finally:
        for keeper in keepers:
            keeper.cancel()


async def _waiting_on_locks(admin: Any, count: int) -> None:
    """Until `count` sessions wait on a lock (PostgreSQL's view: no event to await)."""

    async def waiting() -> bool:
        return (
            int(await admin.fetchval("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted")) >= count
        )

    await _until(waiting, f"{count} session(s) waiting on a lock")


async def test_only_a_fenced_write_waits_for_a_takeover_of_its_lease(pg_database: str) -> None:
    """On PostgreSQL a run's batch locks its thread, then (with a fence) its lease: a fenced write waits while a
    takeover holds the lease's row and goes on once it is done; a write without a fence never waits on it."""
    store = await Store.open(pg_database)
    dsn = make_url(pg_database).set(drivername="postgresql").render_as_string(False)
    locker, admin = (
        await asyncpg.connect(dsn),
        await asyncpg.connect(dsn),
    )  # (a transaction sees activity frozen)
    try:
        tid = await store.create_thread("alice", "team", "scripted", "locks")
        lease = await Leases(store, "worker-a", ttl_s=30).acquire(tid)
        assert lease is not None
        await locker.execute("BEGIN")
        await locker.execute(
            "SELECT 1 FROM run_leases WHERE thread_id = $1 FOR UPDATE", tid
        )  # a takeover's lock
        async with asyncio.timeout(WAIT_S):
            assert await store.append_batch(tid, [("message", {"content": "no fence"})]) == [1]
        write = asyncio.ensure_future(store.append_batch(tid, **_batch("fenced"), fence=lease))  # type: ignore[arg-type]
        await _waiting_on_locks(admin, 1)
        assert not write.done()
        await locker.execute("COMMIT")
        async with asyncio.timeout(WAIT_S):
            assert await write == [2]
        assert [r.payload["content"] for r in await store.events(tid)] == ["no fence", "fenced"]
    finally:
        await locker.close()
        await admin.close()
        await store.close()
