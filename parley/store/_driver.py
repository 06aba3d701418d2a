"""The store's most frequent PostgreSQL statements, run on the pooled connection's asyncpg driver itself.

A statement through SQLAlchemy's execution costs several times the driver's own work: reading one thread took
0.46 ms of CPU that way against 0.04 ms for asyncpg alone on the same server, and checking the connection out of
the pool and back 0.17 ms of the rest. A cluster worker writes a run's batch about twice per agent message and
reads the events and the checkpoint of each run it starts; a web process reads a conversation's thread several
times as a page starts it, and its events, the reader's access and its run's lease as it follows the run. Those
statements take their connection from the same pool as every other (so the pool's checks, limits and outage
handling still apply; _lane.py keeps a few checked out between statements in steady use) and run on it through
SQLAlchemy's public `get_raw_connection()`, looked up once per database connection: same SQL, same rows, without
the per-statement compilation, parameter and result processing.

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

__all__ = [
    "THREAD_BY_ID",
    "DriverStatement",
    "Integrity",
    "driver_of",
    "on_driver",
    "thread_row",
    "usable",
    "utc",
]

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
        pool, as SQLAlchemy does on its own path: the next caller gets a fresh one instead of waiting on it. A
        statement the driver refused to send at all (its connection is closed, or still taken up by the server's
        goodbye: the server ended it a moment ago and the driver has not yet seen the socket close) runs once more,
        on a new connection, unless it belongs to a transaction: nothing of it reached the server."""
        args = [params[name] for name in self.names]
        for again in (False, True):
            driver = await driver_of(conn)
            try:
                return await getattr(driver, how)(self.sql, *args)
            except asyncio.CancelledError:
                await asyncio.shield(conn.invalidate())
                raise
            except (
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
                asyncpg.PostgresConnectionError,
                OSError,
                TimeoutError,
            ) as exc:
                # Inside a transaction the statement belongs to that connection: it cannot move to another one.
                retry = not again and _unsent(exc) and not conn.in_transaction()
                await conn.invalidate()  # SQLAlchemy connects it anew on its next use
                if not retry:
                    raise
        raise AssertionError("unreachable")


def _unsent(exc: BaseException) -> bool:
    """Whether the driver raised `exc` before sending anything: its checks that the connection is open and free
    (`InterfaceError` itself, not its subclasses, which are raised once a statement is under way) and its protocol's
    state check (`InternalClientError`)."""
    return type(exc) is asyncpg.InterfaceError or isinstance(exc, asyncpg.InternalClientError)


_DRIVER = "parley_driver"
"""Where a pooled connection's own record keeps its asyncpg connection (SQLAlchemy clears it when it replaces the
connection)."""


async def driver_of(conn: AsyncConnection) -> asyncpg.Connection:
    """`conn`'s asyncpg connection: looked up once per database connection (the look-up hands off to a greenlet),
    then read from the connection record's `info`."""
    if not conn.invalidated and (driver := conn.info.get(_DRIVER)) is not None:
        return cast(asyncpg.Connection, driver)
    fairy = await conn.get_raw_connection()
    driver = cast(asyncpg.Connection, fairy.driver_connection)
    conn.info[_DRIVER] = driver
    return driver


def usable(conn: AsyncConnection) -> bool:
    """Whether `conn` may take another statement: not closed nor invalidated, and its asyncpg connection (once
    looked up) not closed by the server, as the pool's checkout checks (_engine.check_connections)."""
    if conn.closed or conn.invalidated:
        return False
    driver = conn.info.get(_DRIVER)
    return driver is None or not cast(asyncpg.Connection, driver).is_closed()


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
NEW_THREAD = DriverStatement(
    "INSERT INTO threads (id, owner, team, model, title, created_at, updated_at) "
    "VALUES (CAST(:id AS varchar), :owner, :team, :model, :title, :at, :at)"
)
"""`Store.create_thread`: one per conversation, through SQLAlchemy's statement path about five times the CPU."""


def thread_row(row: asyncpg.Record | None) -> ThreadRow | None:
    """THREAD_BY_ID's row as the store gives it (times in UTC, as UTCDateTime makes them), or None."""
    if row is None:
        return None
    tid, owner, team, model, title, created_at, updated_at = row
    return ThreadRow(tid, owner, team, model, title, utc(created_at), utc(updated_at))
