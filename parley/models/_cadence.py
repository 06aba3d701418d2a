"""How often streamed text is passed on: often while a process streams little, less often as it streams more.

Every piece of streamed text passed on is an event that crosses the run, the store's outbox, a cluster's Redis and
the web socket, and costs the server about as much as the rest of the message it belongs to. A process streaming
a few replies passes each one on every `STREAM_EVERY_S` (ten times a second: smooth to a reader); one streaming
hundreds at once spreads `UPDATES_PER_S` over them, down to `SLOWEST_S` each, so its cost per message falls as its
load rises instead of queueing every message behind pieces nobody can tell apart. Nothing is ever dropped: held
text goes with the next piece or the whole message.
"""

from __future__ import annotations

import weakref

STREAM_EVERY_S = 0.1
"""Streamed text is passed on at most this often, counted from the call's start (nothing is ever dropped)."""
SLOWEST_S = 0.5
"""However loaded the process, each stream is passed on at least this often."""
UPDATES_PER_S = 200.0
"""What a loaded process spreads over its live streams: pieces passed on per second, in all."""


class _Live:
    __slots__ = ("__weakref__",)


class Cadence:
    """The streams live in one process (each held weakly: one forgotten without `end` stops counting once it is
    collected), and how often each may pass its text on now."""

    def __init__(self) -> None:
        self._live: weakref.WeakSet[object] = weakref.WeakSet()

    def begin(self, stream: object | None = None) -> object:
        """Count `stream` (a new token when None) as live until `end`; it, for `end`."""
        stream = _Live() if stream is None else stream
        self._live.add(stream)
        return stream

    def end(self, stream: object) -> None:
        self._live.discard(stream)

    @property
    def live(self) -> int:
        return len(self._live)

    def every_s(self) -> float:
        """Seconds between two pieces of one stream: `STREAM_EVERY_S` while up to 20 streams are live, then
        `UPDATES_PER_S` shared among them, never slower than `SLOWEST_S`."""
        return min(SLOWEST_S, max(STREAM_EVERY_S, len(self._live) / UPDATES_PER_S))

    def due(self, now: float, started: float, shown: float) -> bool:
        """May a stream that started at `started` and last passed text on at `shown` pass it on at `now`? Its first
        piece once `STREAM_EVERY_S` has passed since it started, whatever the load (a held reply's first words show
        while it waits), the next ones every `every_s()`."""
        return now - shown >= (STREAM_EVERY_S if shown == started else self.every_s())
