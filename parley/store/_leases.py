"""Run leases: the table and the SQL behind `Store.take_lease`, `renew_lease`, `release_lease`, `lease_holder`,
`orphaned_runs` and the fence `append_batch` checks.

A conversation's run is owned by one process at a time: the holder of its lease. Each new holder gets a larger
fence, and a write made under a lease is refused once the lease's fence or holder changed, so a process that was
paused past its lease (and taken over) can no longer write. Times come from the database's clock, never from a
process's: holders on different machines agree on when a lease expires. Added after the first stores were made:
`Store.open` creates the table in an older store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    ForeignKey,
    String,
    Table,
    Text,
    case,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import StoreError
from ._driver import DriverStatement, Integrity, on_driver
from ._schema import UTCDateTime, metadata

__all__ = [
    "Lease",
    "LeaseLost",
    "check_fence",
    "live_holder",
    "orphans",
    "release",
    "renew",
    "renew_many",
    "run_leases",
    "take",
]

run_leases = Table(
    "run_leases",
    metadata,
    Column("thread_id", String(64), ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True),
    Column("holder", Text, nullable=True),  # None: released, anyone may take it
    Column("fence", BigInteger, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("run_open", Boolean, nullable=False),  # a run is in progress under this lease
    Column("updated_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to run one conversation, as one holder got it."""

    thread_id: str
    holder: str
    """Who holds it: a name unique to the process (host, pid, a random part)."""
    fence: int
    """Larger for every new holder of the conversation's lease: a write carrying an older one is refused."""


class LeaseLost(StoreError):
    """A write or renewal under a lease that another process took over (or that was released)."""

    def __init__(self, thread_id: str, holder: str | None) -> None:
        self.thread_id = thread_id
        self.holder = holder
        """Who holds the lease now, if anyone."""
        why = f"{holder} took it over" if holder else "its lease was released"
        super().__init__(f"this process no longer owns conversation {thread_id}: {why}")


def clock(conn: AsyncConnection, plus_s: float = 0.0) -> ColumnElement[Any]:
    """The database's time, `plus_s` seconds on. On SQLite in the text form SQLAlchemy stores datetimes in (to the
    microsecond), so the column's stored values and the clock compare as strings."""
    if conn.dialect.name == "sqlite":
        now = func.strftime("%Y-%m-%d %H:%M:%f", "now", f"{plus_s:+.6f} seconds")
        return now.op("||")("000")
    # clock_timestamp(), not now(): a statement that waited for a row lock sees the time it got it.
    return func.clock_timestamp() + func.make_interval(0, 0, 0, 0, 0, 0, literal(plus_s))


def _insert(conn: AsyncConnection) -> Any:
    """An INSERT that can skip a row whose key is taken (both dialects have ON CONFLICT DO NOTHING)."""
    return (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(run_leases)


# On PostgreSQL each lease statement runs on the driver, outside a transaction: a statement is atomic on its own,
# and the portable path's transaction cost three round trips and SQLAlchemy's compilation of the statement each time
# (see _driver.py). Same rows, same conditions, and the database's clock read as the row is locked.
_NOW = "clock_timestamp()"
_UNTIL = "clock_timestamp() + make_interval(secs => CAST(:ttl AS double precision))"
_TAKE = DriverStatement(
    f"""
INSERT INTO run_leases AS l (thread_id, holder, fence, expires_at, run_open, updated_at)
VALUES (CAST(:tid AS varchar), CAST(:holder AS text), 1, {_UNTIL}, CAST(:run_open AS boolean), {_NOW})
ON CONFLICT (thread_id) DO UPDATE SET
    holder = EXCLUDED.holder,
    fence = CASE WHEN l.holder = EXCLUDED.holder THEN l.fence ELSE l.fence + 1 END,
    expires_at = {_UNTIL}, run_open = EXCLUDED.run_open, updated_at = {_NOW}
WHERE l.holder = EXCLUDED.holder OR l.holder IS NULL OR l.expires_at <= {_NOW}
RETURNING l.fence"""
)
_HELD = (
    "thread_id = CAST(:tid AS varchar) AND holder = CAST(:holder AS text) AND fence = CAST(:fence AS bigint)"
)
_RELEASE = DriverStatement(
    f"UPDATE run_leases SET holder = NULL, expires_at = {_NOW}, run_open = CAST(:run_open AS boolean),"
    f" updated_at = {_NOW} WHERE {_HELD}"
)
_RENEW_MANY = DriverStatement(
    f"""
UPDATE run_leases SET expires_at = {_UNTIL}, updated_at = {_NOW}
FROM unnest(CAST(:tids AS varchar[]), CAST(:holders AS text[]), CAST(:fences AS bigint[])) AS held(tid, holder, fence)
WHERE run_leases.thread_id = held.tid AND run_leases.holder = held.holder AND run_leases.fence = held.fence
RETURNING run_leases.thread_id, run_leases.fence"""
)


async def take(conn: AsyncConnection, tid: str, holder: str, ttl_s: float, *, run_open: bool) -> int | None:
    """Take or extend `tid`'s lease for `holder`; returns its fence, or None while another holder's is live."""
    if on_driver(conn):
        params = {"tid": tid, "holder": holder, "ttl": ttl_s, "run_open": run_open}
        try:
            row = await _TAKE.row(conn, params)
        except Integrity as exc:  # the only constraint that can fail: the thread's foreign key
            raise StoreError(f"could not take the lease of thread {tid}: no such thread") from exc
        return None if row is None else int(row[0])
    until, at = clock(conn, ttl_s), clock(conn)
    fresh = (
        _insert(conn)
        .values(thread_id=tid, holder=holder, fence=1, expires_at=until, run_open=run_open, updated_at=at)
        .on_conflict_do_nothing(index_elements=[run_leases.c.thread_id])
        .returning(run_leases.c.fence)
    )
    try:
        fence = await conn.scalar(fresh)
    except IntegrityError as exc:  # the only constraint left to fail: the thread's foreign key
        raise StoreError(f"could not take the lease of thread {tid}: no such thread") from exc
    if fence is not None:
        return int(fence)
    mine = run_leases.c.holder == holder
    # A lease taken from another holder (or after a release) gets a larger fence; our own keeps its fence, so
    # nothing we wrote under it is refused.
    fence = await conn.scalar(
        update(run_leases)
        .where(
            run_leases.c.thread_id == tid,
            or_(mine, run_leases.c.holder.is_(None), run_leases.c.expires_at <= at),
        )
        .values(
            holder=holder,
            fence=case((mine, run_leases.c.fence), else_=run_leases.c.fence + 1),
            expires_at=until,
            run_open=run_open,
            updated_at=at,
        )
        .returning(run_leases.c.fence)
    )
    return None if fence is None else int(fence)


def _held(lease: Lease) -> ColumnElement[bool]:
    return (
        (run_leases.c.thread_id == lease.thread_id)
        & (run_leases.c.holder == lease.holder)
        & (run_leases.c.fence == lease.fence)
    )


async def renew(conn: AsyncConnection, lease: Lease, ttl_s: float) -> bool:
    """Push the lease's expiry `ttl_s` on; False if it is no longer `lease`'s (taken over or released). A lease that
    expired but that nobody took is still its holder's: renewing it is safe, since any taker bumps the fence."""
    return (lease.thread_id, lease.fence) in await renew_many(conn, [lease], ttl_s)


async def renew_many(conn: AsyncConnection, leases: Sequence[Lease], ttl_s: float) -> set[tuple[str, int]]:
    """`renew` for several leases in one statement: (thread, fence) of each lease still its holder's, renewed."""
    if not leases:
        return set()
    if on_driver(conn):
        params = {
            "tids": [lease.thread_id for lease in leases],
            "holders": [lease.holder for lease in leases],
            "fences": [lease.fence for lease in leases],
            "ttl": ttl_s,
        }
        return {(str(tid), int(fence)) for tid, fence in await _RENEW_MANY.rows(conn, params)}
    found = await conn.execute(
        update(run_leases)
        .where(or_(*(_held(lease) for lease in leases)))
        .values(expires_at=clock(conn, ttl_s), updated_at=clock(conn))
        .returning(run_leases.c.thread_id, run_leases.c.fence)
    )
    return {(str(tid), int(fence)) for tid, fence in found}


async def release(conn: AsyncConnection, lease: Lease, *, run_open: bool) -> None:
    """Give the lease up (if it is still `lease`'s). `run_open`: the run is not over, another process should carry
    it on (`orphans` lists it)."""
    if on_driver(conn):
        params = {"tid": lease.thread_id, "holder": lease.holder, "fence": lease.fence, "run_open": run_open}
        await _RELEASE.rows(conn, params)
        return
    await conn.execute(
        update(run_leases)
        .where(_held(lease))
        .values(holder=None, expires_at=clock(conn), run_open=run_open, updated_at=clock(conn))
    )


_LIVE_HOLDER = DriverStatement(
    "SELECT holder FROM run_leases WHERE thread_id = CAST(:tid AS varchar) AND holder IS NOT NULL"
    " AND expires_at > clock_timestamp()"
)
"""`live_holder` on PostgreSQL: the same query, on the driver (see _driver.py)."""


async def live_holder(conn: AsyncConnection, tid: str) -> str | None:
    """Who holds `tid`'s lease and has not let it expire, if anyone."""
    if on_driver(conn):
        row = await _LIVE_HOLDER.row(conn, {"tid": tid})
        found = None if row is None else row[0]
    else:
        found = await conn.scalar(
            select(run_leases.c.holder).where(
                run_leases.c.thread_id == tid,
                run_leases.c.holder.is_not(None),
                run_leases.c.expires_at > clock(conn),
            )
        )
    return None if found is None else str(found)


async def orphans(conn: AsyncConnection) -> list[str]:
    """Threads whose run is open with nobody holding its lease (its holder died, or released it mid-run), oldest
    first."""
    query = (
        select(run_leases.c.thread_id)
        .where(
            run_leases.c.run_open.is_(True),
            or_(run_leases.c.holder.is_(None), run_leases.c.expires_at <= clock(conn)),
        )
        .order_by(run_leases.c.updated_at, run_leases.c.thread_id)
    )
    return [str(tid) for tid in await conn.scalars(query)]


async def check_fence(conn: AsyncConnection, lease: Lease) -> None:
    """Raise LeaseLost unless `lease` still holds its thread. Called inside the write's transaction after its
    first write: SQLite starts the transaction (and takes its write lock) only there, and on PostgreSQL the row lock
    makes a takeover wait until the write is committed or rolled back."""
    found = (
        await conn.execute(
            select(run_leases.c.holder, run_leases.c.fence)
            .where(run_leases.c.thread_id == lease.thread_id)
            .with_for_update()
        )
    ).first()
    if found is None or found[0] != lease.holder or found[1] != lease.fence:
        raise LeaseLost(lease.thread_id, None if found is None else found[0])
