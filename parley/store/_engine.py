"""How the store's database engine is made and its errors told: connection options, SQLite's pragmas."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "PING_IDLE_S",
    "SQLITE_BUSY_TIMEOUT_S",
    "check_connections",
    "engine_options",
    "error_text",
    "json_text",
    "sqlite_pragmas",
]

SQLITE_BUSY_TIMEOUT_S = 30
_CONNECT_TIMEOUT_S = 5
_COMMAND_TIMEOUT_S = 30


json_text = partial(json.dumps, allow_nan=False, ensure_ascii=False)
"""How the store encodes its JSON columns. NaN/Infinity are not JSON: PostgreSQL would reject them, so they are
refused on SQLite too."""


def engine_options(url: URL) -> dict[str, Any]:
    options: dict[str, Any] = {"json_serializer": json_text}
    if url.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif url.drivername == "postgresql+asyncpg":
        # A command that gets no answer (a network partition drops packets without a reset) fails after
        # this long instead of holding the run forever.
        options["connect_args"] = {"timeout": _CONNECT_TIMEOUT_S, "command_timeout": _COMMAND_TIMEOUT_S}
    return options


PING_IDLE_S = 2.0
"""A pooled PostgreSQL connection unused for this long is pinged before it is handed out (see check_connections)."""


def check_connections(engine: AsyncEngine) -> None:
    """Hand out no dead PostgreSQL connection: one the server closed (it restarted, an administrator ended the
    session) is replaced, and one that sat idle in the pool for `PING_IDLE_S` is pinged first.

    SQLAlchemy's `pool_pre_ping` pings on every checkout: three round trips (a transaction around `;`) for each of
    the store's transactions, about a tenth of a busy cluster process's CPU. A connection in steady use is checked
    for free instead: asyncpg knows when the server has closed it."""
    dialect = engine.dialect

    def in_pool(_dbapi_connection: Any, record: Any) -> None:  # made now, or given back: no ping for a while
        record.info[_RETURNED] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and driver.is_closed():
            raise DisconnectionError("the database closed this connection")
        if time.monotonic() - record.info.get(_RETURNED, 0.0) >= PING_IDLE_S:
            try:
                dialect.do_ping(dbapi_connection)
            except Exception as exc:  # whatever the driver raises for a dead connection: take another
                raise DisconnectionError(f"the connection did not answer: {error_text(exc)}") from exc

    event.listen(engine.sync_engine.pool, "connect", in_pool)
    event.listen(engine.sync_engine.pool, "checkin", in_pool)
    event.listen(engine.sync_engine.pool, "checkout", checkout)


_RETURNED = "parley_returned_at"


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run alongside the writer; SQLite leaves foreign keys off unless asked.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL loses nothing when the process dies; only a power cut can drop the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def error_text(exc: BaseException) -> str:
    """The underlying error, without SQLAlchemy's SQL and parameters (which may hold secrets)."""
    orig = getattr(exc, "orig", None)
    cause = orig if isinstance(orig, BaseException) else exc
    text = " ".join(str(cause).split()) or "(no message)"
    return f"{type(cause).__name__}: {text}"
