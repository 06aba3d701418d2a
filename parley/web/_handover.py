"""Which page a run is shown on when its thread is reopened while it goes on.

A reloaded tab may open more than one connection in a row (Chainlit's page reconnects as it applies the thread),
each a browser session of its own that reopens the thread. Their `on_chat_resume` handlers run concurrently, so
the one that reaches the run last is not always the page's live connection: a connection the page has already
dropped may come second, and the run was then shown on a socket nobody listens to (Stop, "Run ended" and the
meter never reached the page). So the run goes to the newest page that is still there, once it has been sent the
thread; a page that left never takes the run, and one that leaves while the newest hands the run to the next.
"""

from __future__ import annotations

from collections.abc import Callable

from chainlit.server import sio
from chainlit.session import WebsocketSession

LEFT_KEPT = 64
"""Closed sockets remembered: far more than a page opens as it reloads."""


class Handover:
    """The pages that reopened the thread while its run is shown, in the order they attached."""

    def __init__(self, connected: Callable[[str], bool] | None = None) -> None:
        self._connected = connected or socket_open
        """Whether a socket (by id) is still connected: a page may close before its handler reaches the run."""
        self.count = 0
        """How many pages have attached so far (a page attaching later supersedes the earlier ones)."""
        self._waiting: dict[int, WebsocketSession] = {}
        """Pages attached and not yet sent the thread, by number."""
        self._ready: dict[int, WebsocketSession] = {}
        """Pages sent the thread that wait for a newer page: one of them takes the run should the newer leave."""
        self._left: dict[str, None] = {}
        """Sockets that closed, the latest LEFT_KEPT (a page's session keeps its id when it reconnects: its socket
        id is new)."""

    def gone(self, ws: WebsocketSession) -> bool:
        sid = str(ws.socket_id)
        return sid in self._left or not self._connected(sid)

    def attach(self, ws: WebsocketSession) -> int | None:
        """A page reopened the thread: its number, or None for a page whose socket has closed already."""
        if self.gone(ws):
            return None
        self.count += 1
        self._waiting[self.count] = ws
        return self.count

    def sent(self, number: int) -> WebsocketSession | None:
        """Page `number` has the thread: the page to show the run on now, or None to wait (for a newer page's
        thread, or because a page was handed the run already)."""
        ws = self._waiting.pop(number, None)
        if ws is None:
            return None
        self._ready[number] = ws
        return self._choose()

    def left(self, ws: WebsocketSession) -> WebsocketSession | None:
        """Page `ws` closed: the page to show the run on now, if the run was waiting for that one."""
        self._left[str(ws.socket_id)] = None
        while len(self._left) > LEFT_KEPT:  # a thread open for weeks, reloaded often
            del self._left[next(iter(self._left))]
        if not self._waiting and not self._ready:
            return None
        return self._choose()

    def _choose(self) -> WebsocketSession | None:
        attached = self._waiting | self._ready
        there = [n for n, ws in attached.items() if not self.gone(ws)]
        newest = max(there or attached)  # every page gone: the newest anyway, so the run is not held for good
        if newest in self._waiting and there:
            return None  # the newest page still there has not been sent the thread yet
        chosen = attached[newest]
        self._waiting.clear()  # the pages before it lost the run for good
        self._ready.clear()
        return chosen


def socket_open(sid: str) -> bool:
    """Whether Chainlit's Socket.IO server still has socket `sid` connected (False from its disconnect on)."""
    return bool(sio.manager.is_connected(sid, "/"))
