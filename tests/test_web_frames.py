"""The web chat's WebSocket frames written in one step of the event loop go out in one write (parley/web/_wsframes)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvicorn
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from parley._ui import WS_PROTOCOL
from parley.web import _wsframes
from parley.web._wsframes import JoinedWrites, JoinedWritesProtocol

WAIT_S = 10.0


class _Transport:
    """What the socket was given, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000)}.get(name, default)


async def test_what_is_written_in_one_step_reaches_the_socket_once_in_order() -> None:
    inner = _Transport()
    joined = JoinedWrites(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    for part in (b"frame 1|", bytearray(b"frame 2|"), memoryview(b"frame 3|"), b""):
        joined.write(part)
    assert inner.writes == [] and joined.get_write_buffer_size() == 24
    await asyncio.sleep(0)
    assert inner.writes == [b"frame 1|frame 2|frame 3|"]
    joined.write(b"next step")
    await asyncio.sleep(0)
    assert inner.writes[1:] == [b"next step"]
    assert joined.get_extra_info("peername") == ("127.0.0.1", 5000)  # the rest is the socket's


async def test_closing_writes_what_is_held_first_and_aborting_drops_it() -> None:
    inner = _Transport()
    joined = JoinedWrites(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.write(b"close frame")
    joined.close()
    assert inner.writes == [b"close frame"] and inner.closed
    await asyncio.sleep(0)
    assert inner.writes == [b"close frame"]  # not twice

    inner = _Transport()
    joined = JoinedWrites(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.write(b"never sent")
    joined.abort()
    await asyncio.sleep(0)
    assert inner.writes == [] and inner.aborted


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts, sends three events in one step, closes."""
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    for n in range(3):
        await send({"type": "websocket.send", "text": f"event {n}"})
    await send({"type": "websocket.close", "code": 1000})


async def _client(port: int) -> list[str]:
    """A WebSocket client (wsproto over a plain socket): the texts it was sent until the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ws = WSConnection(ConnectionType.CLIENT)
    writer.write(ws.send(Request(host=f"127.0.0.1:{port}", target="/socket")))
    texts: list[str] = []
    try:
        while data := await reader.read(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, TextMessage):
                    texts.append(str(event.data))
                elif isinstance(event, CloseConnection):
                    writer.write(ws.send(event.response()))
                    return texts
                else:
                    assert isinstance(event, AcceptConnection), event
    finally:
        writer.close()
    return texts


async def test_uvicorn_serves_websockets_through_the_protocol_parley_ui_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The class `parley ui` names in UVICORN_WS_PROTOCOL is the one uvicorn uses (it imports `module:Class`), a
    real client gets every frame in order, and frames sent in one step went out in one write. Fails loudly when
    uvicorn changes how it picks or starts its WebSocket protocol."""
    flushed: list[int] = []
    flush = JoinedWrites._flush  # pyright: ignore[reportPrivateUsage]

    def counting(self: JoinedWrites) -> None:
        flushed.append(len(self._held))  # pyright: ignore[reportPrivateUsage]
        flush(self)

    monkeypatch.setattr(JoinedWrites, "_flush", counting)
    config = uvicorn.Config(_app, ws=WS_PROTOCOL, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        texts = await asyncio.wait_for(_client(listening.getsockname()[1]), WAIT_S)
        assert config.ws_protocol_class is JoinedWritesProtocol
        assert (
            _wsframes.JoinedWritesProtocol.__mro__[1].__module__
            == "uvicorn.protocols.websockets.wsproto_impl"
        )
        assert texts == ["event 0", "event 1", "event 2"]
        assert max(flushed) >= 3, f"frames of one step went out one by one: {flushed}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, WAIT_S)
        listening.close()
