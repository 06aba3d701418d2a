"""A run's batches on a SQLite file: one connection of their own, written at once or in a thread of their own.

Through the async driver a batch costs a dozen hops between the event loop and the driver's thread (each cursor,
statement, fetch, commit), each waiting for the busy loop to come round. Here a batch is written on the spot when
the database is free (a few tens of microseconds: under WAL with synchronous=NORMAL a commit does not wait for the
disk), and in a thread of its own, waiting as long as the Store's busy timeout, when another connection holds the
write lock. The rows are the very ones the SQLAlchemy path writes: values pass through the tables' column types.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


_SQLITE_BUSY = 5


class NoSuchThread(Exception):
    """The batch's thread is not in the database."""


class _Busy(Exception):
    """Another connection holds the write lock: write in the thread, which waits for it."""


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
        self._waits: bool | None = None
        """Whether the connection's busy timeout is set to wait (in the thread) or not (on the loop)."""
        self._queued: Future[list[int]] | None = None
        """The last batch handed to the thread: until it is done, the connection is the thread's."""
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
        args = (tid, rows, audit_rows, checkpoint_row, when, self._updated(at))
        if self._queued is None or self._queued.done():
            try:
                return self._commit(*args, wait=False)
            except _Busy:
                pass
        self._queued = self._pool.submit(self._commit, *args, wait=True)
        return await asyncio.wrap_future(self._queued)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
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
        *,
        wait: bool,
    ) -> list[int]:
        """The batch in one transaction. `wait=False` (on the event loop): give up at once if the database is
        locked; `wait=True` (in the thread): wait for it up to the busy timeout."""
        conn = self._connection()
        if self._waits is not wait:
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000) if wait else 0}")
            self._waits = wait
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not wait and exc.sqlite_errorcode == _SQLITE_BUSY:
                raise _Busy from exc
            raise
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
