"""A conversation's events as Server-Sent Events: what the store holds after a point, then each event as it is
stored. Each event's `id:` is its seq in the store, so a client that reconnects with `Last-Event-ID` (browsers'
EventSource does so by itself) gets exactly what it missed, from the store, and then goes on live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence

from .._publish import MAX_BUFFERED_CHUNKS
from ..cluster import Node
from ..events import ChunkEvent, Event
from ..run import Run
from ..store import EventRow, Store
from ._hub import Hub

__all__ = ["KEEPALIVE_S", "SSE_TYPE", "LiveChunks", "frame", "stream"]

SSE_TYPE = "text/event-stream"
KEEPALIVE_S = 15.0
"""A comment line this often while nothing happens: proxies keep the connection, and the store is read again
(a run driven by the web chat, or by another replica, wakes no stream of this process)."""
RETRY_MS = 2000


def frame(row: EventRow) -> str:
    data = json.dumps(row.payload, ensure_ascii=False, separators=(",", ":"))
    return f"id: {row.seq}\nevent: {row.type}\ndata: {data}\n\n"


def chunk_frame(payload: dict[str, object]) -> str:
    """Streamed text as an event without an id: never stored, so a resumed stream is not told to start after it."""
    return f"event: chunk\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


class LiveChunks:
    """The streamed text of the run in progress on this server (never stored: sent without an id, so a resumed
    stream is not told to start after one). A preview: the finished message follows with its id.

    Each piece is taken as the run shows it, in the same step of the event loop, with the seq of the last stored
    event shown before it: a piece written in the same batch as its message (the call's usage waited there for it)
    is shown after the write that wakes the stream, and the stream may read that message from the store at once.
    Merged with what the stream read, each piece goes after the stored event it followed, before the next."""

    def __init__(self, hub: Hub, tid: str, wake: asyncio.Event) -> None:
        self._hub, self._tid, self._wake = hub, tid, wake
        self._run: Run | None = None
        self._forget: Callable[[], None] | None = None
        self._pending: list[tuple[int | None, ChunkEvent]] = []
        self._after: int | None = None
        """The seq of the last stored event of the run shown since this began to follow it (None: none yet)."""

    def follow(self) -> None:
        """Take the pieces of the run in progress from now on, if it is a new one."""
        conv = self._hub.live(self._tid)
        run = conv.current_run if conv is not None and conv.running else None
        if run is not None and run is not self._run:
            self.close()
            self._run, self._after = run, None
            self._forget = run.on_shown(self._shown)

    def _shown(self, event: Event, seq: int | None) -> None:
        if isinstance(event, ChunkEvent):
            # A stream whose client reads slowly falls behind: past the bound its newest pieces go (the finished
            # message still comes).
            if len(self._pending) < MAX_BUFFERED_CHUNKS:
                self._pending.append((self._after, event))
                self._wake.set()
            return
        if seq is None:
            return
        if self._after is None:  # the pieces so far came between seq - 1 and seq
            self._pending = [(seq - 1 if after is None else after, ev) for after, ev in self._pending]
        self._after = seq

    def before_read(self) -> list[str]:
        self.follow()
        return []

    def with_rows(self, rows: Sequence[EventRow], last: int) -> list[str]:
        """`rows` (read after `last`) as frames, each piece shown so far among them after the stored event it
        followed; pieces that followed an event not read yet wait for the next read. Pieces shown while no stored
        event has been since this began to follow the run go after the rows (they belong to its live end)."""
        out: list[str] = []
        pieces, self._pending = self._pending, []
        i = 0
        for row in rows:
            while i < len(pieces) and (after := pieces[i][0]) is not None and after < row.seq:
                out.append(chunk_frame(pieces[i][1].model_dump(mode="json")))
                i += 1
            out.append(frame(row))
        seen = rows[-1].seq if rows else last
        while i < len(pieces) and ((after := pieces[i][0]) is None or after <= seen):
            out.append(chunk_frame(pieces[i][1].model_dump(mode="json")))
            i += 1
        self._pending = pieces[i:] + self._pending
        return out

    def close(self) -> None:
        if self._forget is not None:
            self._forget()
            self._forget = None


class Relayed:
    """In a cluster: each event of a run of `tid`, whichever process drives it, as it is shown there (the bus). It
    wakes the stream, which reads the store; streamed text (never stored) is kept for it with `chunks`."""

    def __init__(self, node: Node, tid: str, start: str, wake: asyncio.Event, chunks: bool) -> None:
        self._pending: list[str] = []
        self._reader = asyncio.get_running_loop().create_task(
            self._read(node, tid, start, wake, chunks), name="parley-api-relayed"
        )

    async def _read(self, node: Node, tid: str, start: str, wake: asyncio.Event, chunks: bool) -> None:
        async for _, payload, _ in node.bus.follow(tid, start):  # from before the store is first read
            if payload.get("type") == "chunk":
                if chunks:
                    self._pending.append(chunk_frame(payload))
                    wake.set()
                continue
            wake.set()

    def before_read(self) -> list[str]:
        """The pieces relayed so far: they came on the bus before the events the stream is about to read."""
        taken, self._pending = self._pending, []
        return taken

    def with_rows(self, rows: Sequence[EventRow], last: int) -> list[str]:
        return [frame(row) for row in rows]

    def close(self) -> None:
        self._reader.cancel()


async def _live_text(hub: Hub, tid: str, wake: asyncio.Event, chunks: bool) -> Relayed | LiveChunks | None:
    """What wakes a followed stream besides this process's own runs, and the streamed text it is sent: in a
    cluster, the bus (every process's runs); else this process's run in progress, with `chunks`."""
    node = await hub.node()
    if node is not None:
        return Relayed(node, tid, await node.bus.last_id(tid), wake, chunks)
    return LiveChunks(hub, tid, wake) if chunks else None


async def _stored(
    store: Store, tid: str, last: int, live: Relayed | LiveChunks | None, until_result: bool
) -> tuple[list[str], int, bool]:
    """The frames of what the store holds after `last` (up to the next result, with `until_result`), the pieces of
    `live` among them; the seq of the last row read; whether a result ended them."""
    rows = await store.events(tid, last)
    end = next((i for i, row in enumerate(rows) if row.type == "result"), None) if until_result else None
    rows = rows if end is None else rows[: end + 1]
    frames = live.with_rows(rows, last) if live is not None else [frame(row) for row in rows]
    return frames, rows[-1].seq if rows else last, end is not None


async def stream(
    hub: Hub, tid: str, after: int, *, user: str, follow: bool, until_result: bool, chunks: bool = False
) -> AsyncIterator[str]:
    """The events of `tid` with seq > `after`; with `follow`, then each as it is stored, until the client goes.
    With `chunks`, the streamed text of a run in progress too. The stream ends once `user` may no longer read
    `tid` (its owner stopped sharing it): at once in a cluster told of it (`Node.revoke`), else at its next wake-up."""
    store = await hub.store()
    wake = hub.waker(tid)
    live = await _live_text(hub, tid, wake, chunks) if follow else None
    node = await hub.node() if follow else None
    forget = await node.on_revoked(tid, user, wake.set) if node is not None else None  # ends at once
    last = after
    try:
        yield f"retry: {RETRY_MS}\n\n"
        while True:
            wake.clear()
            if not await hub.still_in(user, tid):
                yield ": your access to this conversation ended: its owner stopped sharing it with you\n\n"
                return
            for text in live.before_read() if live is not None else ():
                yield text
            frames, last, ended = await _stored(store, tid, last, live, until_result)
            for text in frames:
                yield text
            if ended:
                return
            if not follow:
                return
            try:
                await asyncio.wait_for(wake.wait(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keepalive\n\n"
    finally:
        hub.forget(tid, wake)
        if live is not None:
            live.close()
        if forget is not None:
            forget()
