"""`Store.append_batch` on PostgreSQL: a thread's events, audit rows and checkpoint in one statement.

The portable path (`_append.write_batch`) takes a transaction of five to seven round trips: BEGIN, the thread's
counter, the events, the audit rows, the checkpoint, the fence and COMMIT, each also a pass through SQLAlchemy's
execution. A run's writes are most of a cluster worker's database time, so here the whole batch is one statement:
PostgreSQL runs a statement atomically on its own, with every part of it (data-modifying WITH queries included)
or none, and it runs on the driver itself (see _driver). The rows are the very ones the portable path writes, and
the same things are refused:

- the thread's row is locked first, then (with a fence) the lease's: in the order of every other statement that
  takes both (appends, `delete_thread` and its cascade), so that none of them deadlocks with a write. A takeover
  waits until the write is done;
- with a fence, nothing is written unless the lease still names this holder and fence (LeaseLost); without one,
  the lease's row is not touched;
- events or a checkpoint for a thread that does not exist write nothing (StoreError), audit rows included.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ._append import Batch
from ._driver import DriverStatement, Integrity
from ._engine import json_text
from ._leases import Lease, LeaseLost
from ._rows import StoreError

__all__ = ["write_batch_at_once"]


_WRITE = DriverStatement(
    """
WITH thread AS (
    SELECT id FROM threads WHERE id = CAST(:tid AS varchar) FOR NO KEY UPDATE
), lease AS (
    SELECT holder, fence FROM run_leases
    WHERE CAST(:fenced AS boolean) AND thread_id = CAST(:tid AS varchar) AND EXISTS (SELECT 1 FROM thread)
    FOR UPDATE
), checks AS (
    SELECT NOT CAST(:fenced AS boolean) OR EXISTS (
               SELECT 1 FROM lease WHERE holder = CAST(:holder AS text) AND fence = CAST(:fence AS bigint)
           ) AS fence_ok,
           (CAST(:n AS integer) = 0 AND NOT CAST(:has_checkpoint AS boolean)) OR EXISTS (SELECT 1 FROM thread)
           AS thread_ok
), allowed AS (
    SELECT fence_ok AND thread_ok AS ok FROM checks
), bump AS (
    UPDATE threads SET last_seq = last_seq + CAST(:n AS integer), updated_at = CAST(:at AS timestamptz)
    WHERE id = CAST(:tid AS varchar) AND CAST(:n AS integer) > 0 AND (SELECT ok FROM allowed)
    RETURNING last_seq
), written AS (
    SELECT (SELECT ok FROM allowed) AND (CAST(:n AS integer) = 0 OR EXISTS (SELECT 1 FROM bump)) AS ok
), new_events AS (
    INSERT INTO events (thread_id, seq, type, payload, created_at)
    SELECT CAST(:tid AS varchar), bump.last_seq - CAST(:n AS integer) + e.ord, e.type, CAST(e.payload AS json),
           CAST(:at AS timestamptz)
    FROM bump, unnest(CAST(:types AS text[]), CAST(:payloads AS text[])) WITH ORDINALITY AS e(type, payload, ord)
), new_audit AS (
    INSERT INTO audit (thread_id, actor, action, detail, created_at)
    SELECT CAST(:tid AS varchar), a.actor, a.action, CAST(a.detail AS json), CAST(:at AS timestamptz)
    FROM unnest(CAST(:actors AS text[]), CAST(:actions AS text[]), CAST(:details AS text[])) AS a(actor, action, detail)
    WHERE (SELECT ok FROM written)
), new_checkpoint AS (
    INSERT INTO checkpoints (thread_id, turn, state, pending, created_at)
    SELECT CAST(:tid AS varchar), CAST(:turn AS integer), CAST(:state AS json), CAST(:pending AS json),
           CAST(:at AS timestamptz)
    WHERE CAST(:has_checkpoint AS boolean) AND (SELECT ok FROM written)
)
SELECT checks.thread_ok, checks.fence_ok, (SELECT last_seq FROM bump), (SELECT holder FROM lease) FROM checks
"""
)


async def write_batch_at_once(
    conn: AsyncConnection, tid: str, batch: Batch, at: datetime, what: str, fence: Lease | None
) -> list[int]:
    """Write the batch in one statement on `conn` (in autocommit: the statement is the transaction); returns the
    events' seqs. LeaseLost, and nothing written, if `fence` no longer holds the thread."""
    new_events = batch[0]
    try:
        row = await _WRITE.row(conn, _params(tid, batch, at, fence))
    except Integrity as exc:  # the only constraint that can fail is the checkpoint's thread
        raise StoreError(f"could not {what}: no such thread") from exc
    assert row is not None  # the statement's last SELECT has one row
    thread_ok, fence_ok, last, holder = row
    if not thread_ok:
        raise StoreError(f"could not {what}: no such thread")
    if not fence_ok:
        raise LeaseLost(tid, holder)
    if new_events and last is None:  # deleted while the statement ran
        raise StoreError(f"could not {what}: no such thread")
    return list(range(int(last) - len(new_events) + 1, int(last) + 1)) if new_events else []


def _params(tid: str, batch: Batch, at: datetime, fence: Lease | None) -> dict[str, Any]:
    """The statement's parameters: the batch's rows as arrays, its JSON encoded as the engine's columns encode it."""
    new_events, audits, checkpoint = batch
    turn, state, pending = checkpoint if checkpoint is not None else (None, None, None)
    return {
        "tid": tid,
        "fenced": fence is not None,
        "holder": fence.holder if fence is not None else None,
        "fence": fence.fence if fence is not None else None,
        "n": len(new_events),
        "at": at,
        "types": [kind for kind, _ in new_events],
        "payloads": [json_text(dict(payload)) for _, payload in new_events],
        "actors": [actor for actor, _, _ in audits],
        "actions": [action for _, action, _ in audits],
        "details": [json_text(dict(detail)) for _, _, detail in audits],
        "has_checkpoint": checkpoint is not None,
        "turn": turn,
        "state": json_text(dict(state)) if isinstance(state, Mapping) else None,
        "pending": json_text(list(pending)) if pending is not None else None,
    }
