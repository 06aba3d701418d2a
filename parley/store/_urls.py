"""Database URLs: the default, normalising to the async drivers, and hiding passwords."""

from __future__ import annotations

import os

from sqlalchemy.engine import URL, make_url

from ..paths import data_dir

__all__ = ["default_url", "normalise_url", "redact"]

# Drivers parley can run on, keyed by what a plain URL names.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",  # Heroku-style URLs
}


def default_url() -> str:
    """`PARLEY_DATABASE_URL` if set, else a SQLite file in the data directory."""
    env = os.environ.get("PARLEY_DATABASE_URL", "").strip()
    if env:
        return env
    return f"sqlite+aiosqlite:///{data_dir() / 'parley.db'}"


def normalise_url(url: str | URL) -> URL:
    """Parse `url`; plain `postgresql://` and `sqlite://` URLs get the async drivers."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def redact(url: str | URL) -> str:
    """The URL for messages: password masked. Never fails, even on a malformed URL."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"
