"""The SQL behind `Store.append_batch`: a thread's events, audit rows and checkpoint in one transaction, fenced by
the run's lease when it has one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ._leases import Lease, check_fence
from ._rows import StoreError
from ._schema import audit, checkpoints, events, threads

__all__ = ["Batch", "batch_what", "write_batch"]

Batch = tuple[
    Sequence[tuple[str, Mapping[str, Any]]],
    Sequence[tuple[str, str, Mapping[str, Any]]],
    tuple[int, Mapping[str, Any], Sequence[str]] | None,
]
"""(events as (type, payload), audit rows as (actor, action, detail), checkpoint as (turn, state, pending))."""


def batch_what(tid: str, batch: Batch) -> str:
    """What a batch write does, for its error message."""
    new_events, audits, checkpoint = batch
    if len(new_events) == 1 and not audits and checkpoint is None:
        return f"append a '{new_events[0][0]}' event to thread {tid}"
    if not new_events and not audits and checkpoint is not None:
        return f"save a checkpoint of thread {tid} at turn {checkpoint[0]}"
    return f"append {len(new_events)} events to thread {tid}"


async def write_batch(
    conn: AsyncConnection, tid: str, batch: Batch, at: datetime, what: str, fence: Lease | None
) -> list[int]:
    """Write the batch; returns the events' seqs. LeaseLost (and the caller's transaction rolls back, so nothing of
    the batch stays) if `fence` no longer holds the thread."""
    new_events, audits, checkpoint = batch
    seqs = await _insert_events(conn, tid, new_events, at, what) if new_events else []
    if audits:
        await conn.execute(
            insert(audit),
            [
                {"thread_id": tid, "actor": actor, "action": action, "detail": dict(detail), "created_at": at}
                for actor, action, detail in audits
            ],
        )
    if checkpoint is not None:
        turn, state, pending = checkpoint
        try:
            await conn.execute(
                insert(checkpoints).values(
                    thread_id=tid, turn=turn, state=dict(state), pending=list(pending), created_at=at
                )
            )
        except IntegrityError as exc:  # the only constraint that can fail is the thread's foreign key
            raise StoreError(f"could not {what}: no such thread") from exc
    if fence is not None:
        await check_fence(conn, fence)
    return seqs


async def _insert_events(
    conn: AsyncConnection,
    tid: str,
    new_events: Sequence[tuple[str, Mapping[str, Any]]],
    at: datetime,
    what: str,
) -> list[int]:
    """Append events with the thread's next seqs. Bumping the counter row-locks the thread (PostgreSQL) or holds the
    write lock (SQLite) until commit, so concurrent appends get consecutive numbers; a failed insert rolls it back."""
    last = await conn.scalar(
        update(threads)
        .where(threads.c.id == tid)
        .values(last_seq=threads.c.last_seq + len(new_events), updated_at=at)
        .returning(threads.c.last_seq)
    )
    if last is None:
        raise StoreError(f"could not {what}: no such thread")
    seqs = list(range(int(last) - len(new_events) + 1, int(last) + 1))
    await conn.execute(
        insert(events),
        [
            {"thread_id": tid, "seq": seq, "type": kind, "payload": dict(payload), "created_at": at}
            for seq, (kind, payload) in zip(seqs, new_events, strict=True)
        ],
    )
    return seqs
