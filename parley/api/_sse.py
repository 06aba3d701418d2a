"""A conversation's events as Server-Sent Events: what the store holds after a point, then each event as it is
stored. Each event's `id:` is its seq in the store, so a client that reconnects with `Last-Event-ID` (browsers'
EventSource does so by itself) gets exactly what it missed, from the store, and then goes on live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from ..store import EventRow
from ._hub import Hub

__all__ = ["KEEPALIVE_S", "SSE_TYPE", "frame", "stream"]

SSE_TYPE = "text/event-stream"
KEEPALIVE_S = 15.0
"""A comment line this often while nothing happens: proxies keep the connection, and the store is read again
(a run driven by the web chat, or by another replica, wakes no stream of this process)."""
RETRY_MS = 2000


def frame(row: EventRow) -> str:
    data = json.dumps(row.payload, ensure_ascii=False, separators=(",", ":"))
    return f"id: {row.seq}\nevent: {row.type}\ndata: {data}\n\n"


async def stream(hub: Hub, tid: str, after: int, *, follow: bool, until_result: bool) -> AsyncIterator[str]:
    """The events of `tid` with seq > `after`; with `follow`, then each as it is stored, until the client goes."""
    store = await hub.store()
    wake = hub.waker(tid)
    last = after
    try:
        yield f"retry: {RETRY_MS}\n\n"
        while True:
            wake.clear()
            for row in await store.events(tid, last):
                yield frame(row)
                last = row.seq
                if until_result and row.type == "result":
                    return
            if not follow:
                return
            try:
                await asyncio.wait_for(wake.wait(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keepalive\n\n"
    finally:
        hub.forget(tid, wake)
