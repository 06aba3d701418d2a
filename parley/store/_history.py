"""A thread's events and its latest checkpoint as the store reads them back: the queries behind `Store.events` and
`Store.latest_checkpoint`, run on the driver itself on PostgreSQL (see _driver.py), where a web process reads a
conversation's events each time a page follows its run and a worker each time it starts or resumes one."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ._driver import DriverStatement, on_driver, utc
from ._rows import CheckpointRow, EventRow
from ._schema import checkpoints, events

__all__ = ["checkpoint_row", "event_rows"]

_EVENTS = DriverStatement(
    "SELECT seq, type, payload, created_at FROM events"
    " WHERE thread_id = CAST(:tid AS varchar) AND seq > CAST(:after AS integer) ORDER BY seq"
)
_CHECKPOINT = DriverStatement(
    "SELECT turn, state, pending, created_at FROM checkpoints WHERE thread_id = CAST(:tid AS varchar)"
    " AND (CAST(:upto AS integer) IS NULL OR turn <= CAST(:upto AS integer)) ORDER BY id DESC LIMIT 1"
)


async def event_rows(conn: AsyncConnection, tid: str, after_seq: int) -> list[EventRow]:
    """The thread's events with seq > `after_seq`, in order."""
    if on_driver(conn):
        found = await _EVENTS.rows(conn, {"tid": tid, "after": after_seq})
        return [EventRow(seq, kind, payload, utc(at)) for seq, kind, payload, at in found]
    query = (
        select(events.c.seq, events.c.type, events.c.payload, events.c.created_at)
        .where(events.c.thread_id == tid, events.c.seq > after_seq)
        .order_by(events.c.seq)
    )
    return [EventRow(*row) for row in await conn.execute(query)]


async def checkpoint_row(conn: AsyncConnection, tid: str, up_to_turn: int | None) -> CheckpointRow | None:
    """The checkpoint saved last (of a turn up to `up_to_turn`, when given), or None."""
    if on_driver(conn):
        row = await _CHECKPOINT.row(conn, {"tid": tid, "upto": up_to_turn})
        return None if row is None else CheckpointRow(row[0], row[1], row[2], utc(row[3]))
    query = (
        select(checkpoints.c.turn, checkpoints.c.state, checkpoints.c.pending, checkpoints.c.created_at)
        .where(checkpoints.c.thread_id == tid)
        .order_by(checkpoints.c.id.desc())
        .limit(1)
    )
    if up_to_turn is not None:
        query = query.where(checkpoints.c.turn <= up_to_turn)
    found = (await conn.execute(query)).first()
    return CheckpointRow(*found) if found else None
