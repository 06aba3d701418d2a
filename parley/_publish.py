"""A run's events on their way out: written to the store first (when one is attached), then shown.

Shown means: kept in the run's and the conversation's history, and handed to every subscriber (each
`async for event in run`). A subscriber's buffer is bounded: a consumer that falls far behind loses streamed
chunks (the finished message still comes), never a finished event. Nobody subscribed: nothing is buffered.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._outbox import Checkpoint, persist
from .events import ChunkEvent, ErrorEvent, Event, RunResult, UsageEvent

if TYPE_CHECKING:
    from .store import Lease, Store

WriteListener = Callable[[float, float, Sequence[Event | Checkpoint], BaseException | None], None]
"""Told of one write to the store: start, end (Unix time), the items written, the error if it failed."""
ShowListener = Callable[[Event, int | None], None]
"""Told of each event as it is shown, with its seq in the store (None for a streamed chunk, or without a store)."""

__all__ = ["MAX_BUFFERED_CHUNKS", "Publisher", "ShowListener", "WriteListener"]

MAX_BUFFERED_CHUNKS = 10_000
"""Streamed chunks a subscriber may fall behind by before its oldest chunks are dropped."""
USAGE_WAITS_S = 0.05
"""How long a model call's usage waits in the outbox for what the call produced (the message, the tool call), so
that both go in one write: the message comes a few steps of the event loop after its usage, and each write is a
store statement (and, in a cluster, a Redis round trip). A call that produced nothing to show (a selector's) has
its usage written alone once this has passed."""


@dataclass
class _Subscriber:
    items: deque[Event] = field(default_factory=lambda: deque[Event]())
    chunks: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: Event) -> None:
        if isinstance(event, ChunkEvent):
            if self.chunks >= MAX_BUFFERED_CHUNKS:
                return
            self.chunks += 1
        self.items.append(event)
        self.ready.set()

    async def next(self) -> Event:
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        event = self.items.popleft()
        if isinstance(event, ChunkEvent):
            self.chunks -= 1
        return event


class Publisher:
    """Store-then-show for one run's events, in order."""

    def __init__(
        self,
        history: list[Event],
        store: Store | None,
        thread_id: str | None,
        run_number: int,
        on_store_failure: Callable[[BaseException], ErrorEvent],
    ) -> None:
        self.events: list[Event] = []
        """The run's events as shown (chunks aside)."""
        self._history = history
        self._subscribers: list[_Subscriber] = []
        self._store, self._thread_id, self._run_number = store, thread_id, run_number
        self._on_store_failure = on_store_failure
        self._outbox: asyncio.Queue[Event | Checkpoint] = asyncio.Queue()
        self._writer: asyncio.Task[RunResult | None] | None = None
        self._unshown = 0
        """Items in the outbox or being written, not yet shown."""
        self.store_failed = False
        """True once a write failed: from then on nothing of the run is kept, and nothing more is shown."""
        self.write_listeners: list[WriteListener] = []
        """Told of each write to the store: its start and end (Unix time), the items written, the error if it
        failed (OpenTelemetry's store-write spans)."""
        self.show_listeners: list[ShowListener] = []
        """Told of each event as it is shown, in order, with its seq (a cluster relays the run to other nodes)."""
        self.fence: Lease | None = None
        """The lease this process holds on the conversation, when a cluster shares it: a write under a lease taken
        over by another process is refused (see parley.cluster)."""
        self._seqs: dict[int, int] = {}
        """The seq the store gave each event of the batch being shown, by the event's id()."""

    def on_shown(self, listener: ShowListener) -> Callable[[], None]:
        """Tell `listener` of each event as it is shown, in the same step of the event loop, with its seq in the store
        (a cluster relays them; the API's event stream places streamed pieces by them). Returns how to stop."""
        self.show_listeners.append(listener)

        def forget() -> None:
            if listener in self.show_listeners:
                self.show_listeners.remove(listener)

        return forget

    def start(self) -> None:
        if self._store is not None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    @property
    def stores(self) -> bool:
        return self._writer is not None

    def emit(self, event: Event) -> None:
        if self._writer is None:
            self._show(event)
            return
        if isinstance(event, ChunkEvent) and self._unshown == 0:
            # A chunk is never stored: with nothing ahead of it waiting to be written, it is shown at once (and
            # after a failed write, like everything else, not at all).
            if not self.store_failed:
                self._show(event)
            return
        self._unshown += 1
        self._outbox.put_nowait(event)  # written first, shown after (see _write)

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        if self._writer is not None and not self.store_failed:
            self._unshown += 1
            self._outbox.put_nowait(checkpoint)

    async def drain(self) -> None:
        """Wait until everything emitted so far is written and shown."""
        if self._writer is not None:
            await self._outbox.join()

    async def finish(self, result: RunResult) -> RunResult:
        """Emit the run's result, wait until it is written and shown; returns it as shown (a failed last write
        turns it into an error)."""
        self.emit(result)
        if self._writer is None:
            return result
        shown = await self._writer
        return shown or result

    def cancel(self) -> None:
        if self._writer is not None:
            self._writer.cancel()

    async def subscribe(self) -> AsyncIterator[Event]:
        """The run's events: those already shown, then each as it is shown, until the result."""
        sub = _Subscriber()
        for event in self.events:
            sub.offer(event)
        self._subscribers.append(sub)
        try:
            while True:
                event = await sub.next()
                yield event
                if isinstance(event, RunResult):
                    return
        finally:
            self._subscribers.remove(sub)

    def _show(self, event: Event) -> None:
        if not isinstance(event, ChunkEvent):  # chunks are for live display: the finished message is kept
            self.events.append(event)
            self._history.append(event)
        for sub in self._subscribers:
            sub.offer(event)
        if self.show_listeners:
            seq = self._seqs.pop(id(event), None)
            for listener in self.show_listeners:
                listener(event, seq)

    async def _batch(self) -> list[Event | Checkpoint]:
        """The next items to write in one transaction: what is waiting, up to the run's result; a model call's usage
        waits up to USAGE_WAITS_S for what the call produced."""
        items = [await self._outbox.get()]
        await self._take_waiting(items)
        loop = asyncio.get_running_loop()
        until = loop.time() + USAGE_WAITS_S
        while _waits_for_its_output(items) and (left := until - loop.time()) > 0:
            try:
                items.append(await asyncio.wait_for(self._outbox.get(), left))
            except TimeoutError:
                break
            await self._take_waiting(items)
        return items

    async def _take_waiting(self, items: list[Event | Checkpoint]) -> None:
        """Add to `items` what the same step of the event loop emits (after one yield), up to the run's result."""
        await asyncio.sleep(0)
        while not self._outbox.empty() and not isinstance(items[-1], RunResult):
            items.append(self._outbox.get_nowait())

    async def _persist(self, items: list[Event | Checkpoint]) -> ErrorEvent | None:
        """Write one batch; the error shown if the write failed (then nothing more is kept)."""
        assert self._store is not None and self._thread_id is not None
        started, failure, error = time.time(), None, None
        try:
            seqs = await persist(self._store, self._thread_id, items, self._run_number, fence=self.fence)
            if self.show_listeners:  # only a cluster's relay asks for them
                stored = [i for i in items if not isinstance(i, Checkpoint | ChunkEvent)]
                self._seqs = {id(event): seq for event, seq in zip(stored, seqs, strict=False)}
        except Exception as exc:
            failure = exc
            self.store_failed = True
            error = self._on_store_failure(exc)
            self._show(error)
        for listener in self.write_listeners:
            listener(started, time.time(), items, failure)
        return error

    async def _write(self) -> RunResult | None:
        """Write each batch of events to the store, then show it. A failed write ends the run with the error,
        and what was not saved is not shown: the error says so, then the run's result (stop reason `error`)."""
        assert self._store is not None and self._thread_id is not None
        error: ErrorEvent | None = None
        while True:
            items = await self._batch()
            if not self.store_failed:
                error = await self._persist(items)
            shown = None
            for item in items:
                if isinstance(item, RunResult) and error is not None:
                    if item.stop_reason != "error":  # the last write failed after the run had ended well
                        item = item.model_copy(
                            update={"stop_reason": "error", "detail": f"{error.error_type}: {error.content}"}
                        )
                    self._show(item)
                    shown = item
                elif isinstance(item, RunResult):
                    self._show(item)
                    shown = item
                elif not isinstance(item, Checkpoint) and not self.store_failed:
                    self._show(item)
                self._unshown -= 1
                self._outbox.task_done()
            if isinstance(items[-1], RunResult):
                return shown


def _waits_for_its_output(items: Sequence[Event | Checkpoint]) -> bool:
    """Whether the batch ends with a model call's usage (streamed pieces aside) and nothing the call produced yet."""
    for item in reversed(items):
        if not isinstance(item, ChunkEvent | Checkpoint):
            return isinstance(item, UsageEvent)
    return False
