"""One blocking read for all the live runs a node follows.

Each page that watches a run driven by another process follows the run's Redis stream. With a blocking XREAD per
page, a replica held a Redis connection per watched conversation and woke once per event per conversation: at a
few hundred conversations that was a sixth of its CPU. So a node's followers share one reader (`Followers`): it
reads every followed stream in one XREAD and hands each follower the entries past its position. A follower that
joins while the reader waits wakes it through a stream of the node's own (`wake`), so that its stream is read at
once from where it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis

log = logging.getLogger("parley.cluster")

Entry = tuple[str, dict[str, str]]
"""A stream entry as Redis gives it: its id and its fields."""
Retrying = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
READ_COUNT = 500
"""Entries read per stream and per read at most (a follower far behind catches up in several reads)."""
WAKE_TTL_S = 3600
GATHER_PER_STREAM_S = 0.0002
GATHER_MAX_S = 0.02
"""After a read that found entries, the reader waits `GATHER_PER_STREAM_S` per followed stream, at most
`GATHER_MAX_S`, before the next, so that what the runs send meanwhile comes in one read: each read names every
followed stream, and a busy replica made one per event. A replica following a few streams reads again at once; one
following a hundred or more waits 20 ms, as much added to a message's latency at worst. Measured through a cluster
at 200 conversations (paired runs, docs/performance.md): a flat 10 ms wait against this one, 3.75 to 4.47 against
3.56 to 3.59 ms of a web replica's CPU per message, and p95 17 to 19 against 28 ms."""


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id ("milliseconds-sequence") as something that sorts as Redis orders entries."""
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (0, 0)


@dataclass(eq=False)
class _Follower:
    last: str
    """The id of the last entry handed to this follower (or where it starts)."""
    inbox: asyncio.Queue[list[Entry] | BaseException] = field(default_factory=asyncio.Queue)


class Followers:
    """A node's followers of Redis streams, served by one reader."""

    def __init__(
        self, client: redis.Redis, wake: str, retrying: Retrying, block_ms: Callable[[], int]
    ) -> None:
        self._redis = client
        self._held = client.client()
        """The reader's own connection, held (its reads block on it anyway): no checkout from the pool and back for
        each read, a fifth of a read's CPU."""
        self._wake = wake
        self._woken = "0-0"
        """The wake stream's last entry read."""
        self._retrying = retrying
        self._block_ms = block_ms
        self._by_key: dict[str, set[_Follower]] = {}
        self._since: dict[str, str] = {}
        """Per followed stream, where the next read starts: at or before every follower's position (kept as
        followers join and entries are handed out, not worked out from every follower's at each read)."""
        self._reader: asyncio.Task[None] | None = None

    async def entries(
        self, key: str, after: str, quiet_s: Callable[[], float]
    ) -> AsyncGenerator[list[Entry] | None]:
        """The entries of stream `key` after entry `after`, a batch at a time, and None each time nothing came
        for `quiet_s()` seconds; until closed."""
        follower = _Follower(after)
        self._by_key.setdefault(key, set()).add(follower)
        since = self._since.get(key)
        if since is None or entry_order(after) < entry_order(since):
            self._since[key] = after
        try:
            await self._serve()
            while True:
                try:
                    async with asyncio.timeout(quiet_s()):
                        got = await follower.inbox.get()
                except TimeoutError:
                    yield None
                    continue
                if isinstance(got, BaseException):
                    raise got
                yield got
        finally:
            followers = self._by_key.get(key)
            if followers is not None:
                followers.discard(follower)
                if not followers:
                    del self._by_key[key]
                    self._since.pop(key, None)

    async def _serve(self) -> None:
        """Make sure the reader reads the followers' streams as they are now."""
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(), name="parley-follow")
            return
        # The reader waits on the streams as they were: a word on the wake stream has it read them again.
        await self._retrying("follow", self._wake_up)

    async def _wake_up(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self._wake, {"w": "1"}, maxlen=1, approximate=False)
            pipe.expire(self._wake, WAKE_TTL_S)
            await pipe.execute()

    async def _read(self) -> None:
        while self._by_key:
            streams: dict[Any, Any] = dict(self._since)
            streams[self._wake] = self._woken
            read = functools.partial(self._held.xread, streams, count=READ_COUNT, block=self._block_ms())
            try:
                batches = await self._retrying("follow", read)
            except Exception as exc:  # not an outage (those are retried): a key that is no stream, say
                await self._fail_unreadable(exc)
                continue
            for key, entries in batches or ():
                if key == self._wake:
                    self._woken = str(entries[-1][0])
                else:
                    self._hand_out(str(key), entries, streams.get(key))
            if batches:
                await self._gather(min(GATHER_MAX_S, GATHER_PER_STREAM_S * len(self._by_key)))

    async def _gather(self, seconds: float) -> None:
        """Let what the runs send in the next `seconds` come in the next read."""
        await asyncio.sleep(seconds)

    async def _fail_unreadable(self, exc: Exception) -> None:
        """The read failed with `exc`: the followers of the keys that hold something other than a stream (written
        there by someone else) fail with it, and the others go on. If no such key is found, all fail."""
        log.warning("could not read the followed streams: %s", exc)
        try:
            kinds = {key: str(await self._redis.type(key)) for key in [*self._by_key, self._wake]}
        except Exception:  # Redis cannot say which: every follower fails
            kinds = {}
        bad = {key for key, kind in kinds.items() if kind not in ("stream", "none")}
        if self._wake in bad:  # the node's own wake stream was overwritten: it starts again
            with contextlib.suppress(Exception):
                await self._redis.delete(self._wake)
            self._woken = "0-0"
            bad.discard(self._wake)
        elif not bad:
            bad = set(self._by_key)
        for key in bad:
            self._since.pop(key, None)
            for follower in self._by_key.pop(key, ()):
                follower.inbox.put_nowait(exc)

    def _hand_out(self, key: str, entries: list[Entry], start: str | None) -> None:
        """Give each follower of `key` the entries past its position, from a read that started after `start`."""
        followers = self._by_key.get(key)
        if not followers or not entries:
            return
        given = [(str(i), fields) for i, fields in entries]
        first = entry_order(given[0][0])
        read_from = entry_order(start) if start is not None else (0, 0)
        behind: list[str] = []
        for follower in followers:
            after = entry_order(follower.last)
            if after < read_from:  # joined while this read was out, further back: the next read starts there
                behind.append(follower.last)
                continue
            # Entries come in order: a follower behind the first is given them all.
            mine = given if first > after else [e for e in given if entry_order(e[0]) > after]
            if mine:
                follower.last = mine[-1][0]
                follower.inbox.put_nowait(mine)
        # Every follower is now at the last entry or beyond it, but those that joined behind the read.
        self._since[key] = min([given[-1][0], *behind], key=entry_order)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._held.aclose()
