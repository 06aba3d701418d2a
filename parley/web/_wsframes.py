"""The web chat's WebSocket connections: the frames written in one step of the event loop go out in one write.

A page is sent several socket events at once (a finished message, the status line moved below it, the meter;
a new speaker's rating step and the start of its stream). python-engineio writes each as a frame of its own, and
uvicorn writes each frame to the socket as it comes: one system call, and one TCP segment through the whole
network stack, per event. Under load those writes were the largest single cost of a web replica (a sixth of its
CPU at 200 conversations through a cluster, docs/performance.md). Here every connection's frames written within
one step of the event loop are joined and written once, at the end of that step: the same bytes in the same order,
one step later.

uvicorn takes its WebSocket protocol class from `UVICORN_WS_PROTOCOL` (Chainlit passes it as `ws`; uvicorn imports
a `module:Class` it does not know by name). `parley ui` names this module's JoinedWritesProtocol there (`parley._ui.WS_PROTOCOL`) unless the user
named one. The class
is uvicorn's own wsproto protocol with its transport wrapped (this module imports wsproto: `parley ui` names it only
where wsproto is installed); tests/test_web_frames.py checks that uvicorn still takes it so.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

__all__ = ["JoinedWrites", "JoinedWritesProtocol"]


class JoinedWrites:
    """A transport whose writes within one step of the event loop reach the socket as one. Everything else is the
    wrapped transport's; closing writes what is held first, aborting drops it."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.write(part)

    def _flush(self) -> None:
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class JoinedWritesProtocol(WSProtocol):
    """uvicorn's wsproto WebSocket protocol, writing through JoinedWrites."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(JoinedWrites(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
