"""How `Store.open` reaches its database: the engine made, a SQLite file kept private, missing tables created."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# The tables declared outside _schema.py: imported so that create_all makes them in an older store too.
from . import _leases, _shares, _tokens  # noqa: F401  # pyright: ignore[reportUnusedImport]
from ._disk import prepare_file, sqlite_file, storage_problem
from ._engine import check_connections, engine_options, error_text, sqlite_pragmas
from ._rows import StoreError
from ._schema import metadata
from ._urls import default_url, normalise_url, redact

__all__ = ["OPEN_TIMEOUT_S", "connect"]

OPEN_TIMEOUT_S = 10.0
SCHEMA_LOCK = 0x7061726C6579
"""The PostgreSQL advisory lock held while the tables are made: replicas and workers starting together on a new
database would otherwise race to create the same tables (and one would fail)."""


async def connect(url: str | None, timeout_s: float) -> tuple[AsyncEngine, str]:
    """An engine on `url` (default: `default_url()`) with every table in place, and the URL to show (password
    masked). StoreError in words if the database cannot be used."""
    raw = url or default_url()
    shown = redact(raw)
    try:
        parsed = normalise_url(raw)
        engine = create_async_engine(parsed, **engine_options(parsed))
    except Exception as exc:
        raise StoreError(f"cannot use database {shown}: {error_text(exc)}") from exc
    file = sqlite_file(parsed)
    if file is not None:
        try:
            prepare_file(file)  # SQLite would make it readable by everyone (0644)
        except OSError as exc:
            await engine.dispose()
            raise StoreError(
                storage_problem(file, exc) or f"cannot open database {shown}: {error_text(exc)}"
            ) from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    elif parsed.drivername == "postgresql+asyncpg":
        check_connections(engine)  # survive a database restart under a long-running server
    try:
        async with asyncio.timeout(timeout_s), engine.begin() as conn:
            if engine.dialect.name == "postgresql":  # processes opening a new database at once: one at a time
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
            await conn.run_sync(metadata.create_all)
    except Exception as exc:
        await engine.dispose()
        why = f"no answer within {timeout_s:g} s" if isinstance(exc, TimeoutError) else error_text(exc)
        problem = storage_problem(file, exc) if file is not None else None
        raise StoreError(problem or f"cannot open database {shown}: {why}") from exc
    return engine, shown
