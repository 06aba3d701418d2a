"""PostgreSQL connections kept checked out between statements while they are in steady use.

Every statement outside a transaction (a read, a run's batch, a lease) used to check a connection out of
SQLAlchemy's pool and back: a connection object made, the pool's checkout, the isolation level set and reset, and
three hand-offs to a greenlet, about 0.1 ms of CPU against the 0.07 ms of the statement itself on the driver. A
cluster worker runs several such statements per agent message. `Lane` keeps up to `keep` connections that have just
been used checked out, and hands them to the next statements directly. A connection idle for `PING_IDLE_S` goes
back to the pool instead of being used again: its next checkout pings it first (see _engine.check_connections), as
before. A statement that failed or was cancelled gives its connection back to the pool (or the driver's failure
has invalidated it), never to the lane; so do statements beyond `keep` running at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import _engine
from ._driver import usable

__all__ = ["KEEP", "Lane"]

KEEP = 4
"""Connections a process keeps between statements at most (out of the pool's 5, plus its overflow)."""


class Lane:
    """Connections of `engine` (outside a transaction) handed from one statement to the next."""

    def __init__(self, engine: AsyncEngine, keep: int = KEEP, idle_s: float | None = None) -> None:
        self._engine = engine
        self._keep = keep
        self._idle = idle_s
        """How long a kept connection may sit idle and still be used: the pool's PING_IDLE_S unless told."""
        self._kept: list[tuple[AsyncConnection, float]] = []
        """Connections checked out and free, each with when it was last given back: the freshest last."""
        self._closed = False

    def _idle_s(self) -> float:
        return _engine.PING_IDLE_S if self._idle is None else self._idle

    @property
    def kept(self) -> int:
        """Connections kept out of the pool right now, free for the next statement."""
        return len(self._kept)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one statement or a few: a kept one if one is fresh, else one from the pool."""
        conn = await self._fresh() or await self._engine.connect()
        done = False
        try:
            yield conn
            done = True
        finally:
            back = self._stale()
            if done and self._keeps(conn):
                self._kept.append((conn, time.monotonic()))
            else:
                back.append(conn)
            await _give_back(back)

    async def _fresh(self) -> AsyncConnection | None:
        """The kept connection given back last, if that was less than `idle_s` ago and it still works."""
        broken: list[AsyncConnection] = []
        found = None
        while found is None and self._kept and time.monotonic() - self._kept[-1][1] < self._idle_s():
            conn, _ = self._kept.pop()
            if usable(conn):
                found = conn
            else:
                broken.append(conn)
        await _give_back(broken)
        return found

    def _keeps(self, conn: AsyncConnection) -> bool:
        return (
            not self._closed
            and len(self._kept) < self._keep
            and usable(conn)
            and not conn.in_transaction()  # a statement through SQLAlchemy began one: the pool ends it
        )

    def _stale(self) -> list[AsyncConnection]:
        """The kept connections idle for `idle_s`, no longer kept (the oldest come first)."""
        now = time.monotonic()
        stale = []
        while self._kept and now - self._kept[0][1] >= self._idle_s():
            stale.append(self._kept.pop(0)[0])
        return stale

    async def close(self) -> None:
        """Give every kept connection back (before the engine is disposed of)."""
        self._closed = True
        kept, self._kept = self._kept, []
        await _give_back([conn for conn, _ in kept])


async def _give_back(conns: list[AsyncConnection]) -> None:
    """Return `conns` to the pool, all of them even if the caller is cancelled meanwhile."""
    if conns:
        await asyncio.shield(asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True))
