"""The store's most frequent PostgreSQL statements, run on the pooled connection's asyncpg driver itself.

A statement through SQLAlchemy's execution costs several times the driver's own work: reading one thread took
0.46 ms of CPU that way against 0.04 ms for asyncpg alone on the same server, and checking the connection out of
the pool and back 0.17 ms of the rest. A cluster worker writes a run's batch about twice per agent message and
reads the events and the checkpoint of each run it starts; a web process reads a conversation's thread several
times as a page starts it, and its events, the reader's access and its run's lease as it follows the run. Those
statements take their connection from the same pool as every other (so the pool's checks, limits and outage
handling still apply) and run on it through SQLAlchemy's public `get_raw_connection()`: same SQL, same rows,
without the per-statement compilation, parameter and result processing.

The JSON codec SQLAlchemy's asyncpg dialect installs on each connection (a `json` parameter is text) applies here
too; `tests/test_store.py` fails if it stops doing so.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from ._rows import ThreadRow
from ._schema import THREAD_COLUMNS

__all__ = ["THREAD_BY_ID", "DriverStatement", "Integrity", "on_driver", "thread_row", "utc"]

_NAMED = re.compile(r"(?<![:\w]):(\w+)")
"""A named parameter (`:tid`), not a cast (`::text`) nor part of a word."""
Integrity = asyncpg.IntegrityConstraintViolationError
"""What the driver raises when a row breaks a constraint (SQLAlchemy's IntegrityError on its own path)."""


class DriverStatement:
    """SQL written with named parameters (`:name`, as for SQLAlchemy's `text()`), run with asyncpg's numbered ones."""

    def __init__(self, sql: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        self.sql = _NAMED.sub(number, sql)
        self.names = tuple(names)

    async def row(self, conn: AsyncConnection, params: Mapping[str, Any]) -> asyncpg.Record | None:
        """The statement's first row on `conn` (a pooled connection), or None."""
        return cast("asyncpg.Record | None", await self._run(conn, "fetchrow", params))

    async def rows(self, conn: AsyncConnection, params: Mapping[str, Any]) -> list[asyncpg.Record]:
        """Every row of the statement on `conn`."""
        return cast("list[asyncpg.Record]", await self._run(conn, "fetch", params))

    async def _run(self, conn: AsyncConnection, how: str, params: Mapping[str, Any]) -> Any:
        """A connection the driver found broken, or whose statement timed out or was cancelled, is dropped from the
        pool, as SQLAlchemy does on its own path: the next caller gets a fresh one instead of waiting on it."""
        fairy = await conn.get_raw_connection()
        driver = cast(asyncpg.Connection, fairy.driver_connection)
        try:
            return await getattr(driver, how)(self.sql, *(params[name] for name in self.names))
        except asyncio.CancelledError:
            await asyncio.shield(conn.invalidate())
            raise
        except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError, TimeoutError):
            await conn.invalidate()
            raise


def on_driver(conn: AsyncConnection) -> bool:
    """Whether `conn`'s statements may run on the driver itself (PostgreSQL's asyncpg)."""
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "asyncpg"


def utc(at: datetime) -> datetime:
    """A time from the driver as the store gives it (UTCDateTime: in UTC)."""
    return at.astimezone(UTC)


THREAD_BY_ID = DriverStatement(
    f"SELECT {', '.join(c.name for c in THREAD_COLUMNS)} FROM threads WHERE id = CAST(:tid AS varchar)"
)
"""`Store.get_thread`: the columns of THREAD_COLUMNS, in order."""


def thread_row(row: asyncpg.Record | None) -> ThreadRow | None:
    """THREAD_BY_ID's row as the store gives it (times in UTC, as UTCDateTime makes them), or None."""
    if row is None:
        return None
    tid, owner, team, model, title, created_at, updated_at = row
    return ThreadRow(tid, owner, team, model, title, utc(created_at), utc(updated_at))
