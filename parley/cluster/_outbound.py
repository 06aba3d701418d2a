"""A node's events on their way to Redis: what every run of the process publishes within one turn of the event loop,
and while the last round trip was out, goes in one pipeline.

Each run used to send its own batch in a transaction of its own (MULTI, its XADDs, EXPIRE, EXEC): at a few hundred
live runs, a worker made a round trip, and a socket write, per streamed piece of every run. Now one transaction
carries every run's batches. Entries of one stream keep their order, since each run sends its next batch only once
its last one is in, and a transaction runs in order.

Streamed pieces are most of what a run sends, and a page shows them at most every 0.1 s: while only pieces wait, the
round trip waits up to PIECES_WAIT_S for more to come with them. Anything else (a message, a tool call, a run's
end) goes at once, and takes the waiting pieces along.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis
from redis.typing import EncodableT, FieldT

__all__ = ["Outbound"]

Fields = dict[FieldT, EncodableT]

PIECES_WAIT_S = 0.005
"""How long a round trip that would carry streamed pieces only waits for company."""


@dataclass
class _Batch:
    key: str
    entries: list[Fields]
    urgent: bool
    done: asyncio.Future[list[str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Outbound:
    """Adds entries to streams, many streams' entries per round trip."""

    def __init__(self, client: redis.Redis, cap: int, ttl_s: int) -> None:
        self._redis = client
        self._cap = cap
        self._ttl_s = ttl_s
        self._waiting: list[_Batch] = []
        self._sender: asyncio.Task[None] | None = None
        self._urgent = asyncio.Event()

    async def add(self, key: str, entries: list[Fields], *, urgent: bool = True) -> list[str]:
        """Add `entries` to stream `key` in order (capped; `urgent`: and expiring `ttl_s` after this write); their
        ids. Raises what Redis or the connection raised for them. Not `urgent` (streamed pieces only): they may wait
        up to PIECES_WAIT_S for company, and leave the stream's expiry as it is."""
        batch = _Batch(key, entries, urgent)
        self._waiting.append(batch)
        if urgent:
            self._urgent.set()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send(), name="parley-bus-out")
        # A caller cancelled meanwhile cancels only its wait: its entries still go out.
        return await batch.done

    async def _send(self) -> None:
        batches: list[_Batch] = []
        try:
            while self._waiting:
                if not any(b.urgent for b in self._waiting):
                    self._urgent.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(PIECES_WAIT_S):
                            await self._urgent.wait()
                batches, self._waiting = self._waiting, []
                try:
                    replies = await self._round_trip(batches)
                except Exception as exc:  # the connection: every batch of this round trip failed
                    for batch in batches:
                        _settle(batch, exc)
                    continue
                self._hand_back(batches, replies)
        except BaseException:  # cancelled (the node closes): nobody waits for ever
            for batch in [*batches, *self._waiting]:
                batch.done.cancel()
            self._waiting = []
            raise

    @staticmethod
    def _hand_back(batches: list[_Batch], replies: list[Any]) -> None:
        at = 0
        for batch in batches:
            mine = replies[at : at + len(batch.entries)]
            at += len(batch.entries)
            failed = next((r for r in mine if isinstance(r, Exception)), None)
            _settle(batch, failed if failed is not None else [str(r) for r in mine])

    async def _round_trip(self, batches: list[_Batch]) -> list[Any]:
        # MULTI/EXEC, still one round trip: should the connection drop and redis-py send it again, nothing of it
        # ran twice (a stream entry is not idempotent). A command that fails (a key that is no stream) fails alone.
        async with self._redis.pipeline(transaction=True) as pipe:
            for batch in batches:
                for entry in batch.entries:
                    pipe.xadd(batch.key, entry, maxlen=self._cap, approximate=True)
            # A stream's expiry moves with each batch but streamed pieces only: every run's first and last
            # batches, and each message's, are of those. (Half of all the commands a worker sent were EXPIREs.)
            for key in dict.fromkeys(b.key for b in batches if b.urgent):
                pipe.expire(key, self._ttl_s)
            return list(await pipe.execute(raise_on_error=False))

    async def close(self) -> None:
        """Wait for what is on its way (a closing node's last events)."""
        if self._sender is not None:
            await asyncio.wait([self._sender])  # a close cancelled meanwhile leaves the sender be


def _settle(batch: _Batch, outcome: list[str] | BaseException) -> None:
    if batch.done.done():
        return
    if isinstance(outcome, BaseException):
        batch.done.set_exception(outcome)
    else:
        batch.done.set_result(outcome)
