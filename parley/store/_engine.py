"""How the store's database engine is made and its errors told: connection options, SQLite's pragmas."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from sqlalchemy.engine import URL

__all__ = ["SQLITE_BUSY_TIMEOUT_S", "engine_options", "error_text", "sqlite_pragmas"]

SQLITE_BUSY_TIMEOUT_S = 30
_CONNECT_TIMEOUT_S = 5
_COMMAND_TIMEOUT_S = 30


def engine_options(url: URL) -> dict[str, Any]:
    # NaN/Infinity are not JSON: PostgreSQL would reject them, so refuse them on SQLite too.
    options: dict[str, Any] = {"json_serializer": partial(json.dumps, allow_nan=False, ensure_ascii=False)}
    if url.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif url.drivername == "postgresql+asyncpg":
        # A command that gets no answer (a network partition drops packets without a reset) fails after
        # this long instead of holding the run forever.
        options["connect_args"] = {"timeout": _CONNECT_TIMEOUT_S, "command_timeout": _COMMAND_TIMEOUT_S}
        options["pool_pre_ping"] = True  # survive a database restart under a long-running server
    return options


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
