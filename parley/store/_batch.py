"""A run's batches on a SQLite file: one connection of their own, written in a thread of their own.

Through the async driver a batch costs a dozen hops between the event loop and the driver's thread (each cursor,
statement, fetch, commit); here it is one hop, and SQLite does the work with the loop free. The rows are the very
ones the SQLAlchemy path writes: the values pass through the tables' own column types first.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Dialect

from ._schema import audit, checkpoints, events, threads

__all__ = ["BatchWriter", "NoSuchThread"]

_BUMP = "UPDATE threads SET last_seq = last_seq + ?, updated_at = ? WHERE id = ? RETURNING last_seq"
_EVENT = "INSERT INTO events (thread_id, seq, type, payload, created_at) VALUES (?, ?, ?, ?, ?)"
_AUDIT = "INSERT INTO audit (thread_id, actor, action, detail, created_at) VALUES (?, ?, ?, ?, ?)"
_CHECKPOINT = "INSERT INTO checkpoints (thread_id, turn, state, pending, created_at) VALUES (?, ?, ?, ?, ?)"


class NoSuchThread(Exception):
    """The batch's thread is not in the database."""


def _binder(column: Any, dialect: Dialect) -> Callable[[Any], Any]:
    process = column.type.bind_processor(dialect)
    return process if process is not None else (lambda value: value)


class BatchWriter:
    """Writes batches of one SQLite file's threads, one transaction each, on a connection and thread of its own."""

    def __init__(self, path: Path, dialect: Dialect, busy_timeout_s: float) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="parley-store")
        self._conn: sqlite3.Connection | None = None
        self._when = _binder(events.c.created_at, dialect)
        self._updated = _binder(threads.c.updated_at, dialect)
        self._payload = _binder(events.c.payload, dialect)
        self._detail = _binder(audit.c.detail, dialect)
        self._state = _binder(checkpoints.c.state, dialect)
        self._pending = _binder(checkpoints.c.pending, dialect)

    async def write(
        self,
        tid: str,
        new_events: Sequence[tuple[str, Mapping[str, Any]]],
        audits: Sequence[tuple[str, str, Mapping[str, Any]]],
        checkpoint: tuple[int, Mapping[str, Any], Sequence[str]] | None,
        at: datetime,
    ) -> list[int]:
        """The batch in one transaction; returns the events' seqs. Values are converted (JSON, times) here, so a
        value that cannot be stored fails before anything is written."""
        when = self._when(at)
        rows = [(kind, self._payload(dict(payload))) for kind, payload in new_events]
        audit_rows = [
            (tid, actor, action, self._detail(dict(detail)), when) for actor, action, detail in audits
        ]
        checkpoint_row = None
        if checkpoint is not None:
            turn, state, pending = checkpoint
            checkpoint_row = (tid, turn, self._state(dict(state)), self._pending(list(pending)), when)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, self._commit, tid, rows, audit_rows, checkpoint_row, when, self._updated(at)
        )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=self._busy_timeout_s, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")  # as the Store's own connections (WAL is the file's)
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
        return self._conn

    def _commit(
        self,
        tid: str,
        rows: list[tuple[str, Any]],
        audit_rows: list[tuple[Any, ...]],
        checkpoint_row: tuple[Any, ...] | None,
        when: Any,
        updated: Any,
    ) -> list[int]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            seqs: list[int] = []
            if rows:
                found = conn.execute(_BUMP, (len(rows), updated, tid)).fetchone()
                if found is None:
                    raise NoSuchThread(tid)
                last = int(found[0])
                seqs = list(range(last - len(rows) + 1, last + 1))
                conn.executemany(
                    _EVENT,
                    [
                        (tid, seq, kind, payload, when)
                        for seq, (kind, payload) in zip(seqs, rows, strict=True)
                    ],
                )
            if audit_rows:
                conn.executemany(_AUDIT, audit_rows)
            if checkpoint_row is not None:
                try:
                    conn.execute(_CHECKPOINT, checkpoint_row)
                except (
                    sqlite3.IntegrityError
                ) as exc:  # the only constraint that can fail: the thread's foreign key
                    raise NoSuchThread(tid) from exc
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return seqs

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)
