"""Clients for the security tests: plain HTTP with a login cookie, and Chainlit's socket without a browser.

A test that talks to the socket itself chooses every value a hostile client could (thread id,
session id, message text), which a browser would not let it do.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ui.conftest import ROOT, Server

try:
    import aiohttp  # noqa: F401 - python-socketio's client needs it for websockets
    import socketio
except ImportError:  # pragma: no cover - the modules that use it skip themselves
    socketio = None

SOCKET_MISSING = (
    None if socketio is not None else "python-socketio's client needs aiohttp (pip install aiohttp)"
)
SOCKET_PATH = "/ws/socket.io"
WAIT_S = 30.0
TEAM = (
    "content-studio"  # the default team: researcher, writer, editor in turn; the editor's APPROVE ends a run
)


def script(path: Path, runs: int = 6, *, delay_s: float = 0.0, say: dict[str, str] | None = None) -> Path:
    """A scripted model for content-studio good for `runs` runs; `say` sets a role's first reply."""
    roles = {
        role: [f"{role} reply {i}" for i in range(1, runs + 1)] for role in ("researcher", "writer", "editor")
    }
    roles["editor"] = [f"Fine. APPROVE ({i})" for i in range(1, runs + 1)]
    for role, text in (say or {}).items():
        roles[role][0] = text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"roles": roles, "delay_s": delay_s}), encoding="utf-8")
    return path


def add_users(server: Server, **passwords: str) -> None:
    for name, password in passwords.items():
        server.parley("users", "add", name, "--password-stdin", stdin=password + "\n")


def serve_users(data: Path, **passwords: str) -> Iterator[Server]:
    """A running server whose users are `passwords`' names (login required), stopped afterwards."""
    server = Server(data, str(script(data / "script.yaml", runs=12)))
    add_users(server, **passwords)
    try:
        yield server.start()
    finally:
        server.stop()


def http(server: Server, *, source: str = "127.0.0.1") -> httpx.Client:
    """An HTTP client connecting from `source` (any 127.x.y.z address is this machine too)."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=server.url, transport=transport, timeout=WAIT_S)


def login(server: Server, name: str, password: str) -> httpx.Client:
    client = http(server)
    answer = client.post("/login", data={"username": name, "password": password})
    assert answer.status_code == 200, f"{name} could not sign in: {answer.status_code} {answer.text}"
    return client


def cookie_of(client: httpx.Client) -> str:
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


def local_cookie(server: Server) -> str:
    """Local mode (no user created yet): the cookie the page gets without a login."""
    with http(server) as client:
        assert client.post("/auth/header", json={}).status_code == 200
        return cookie_of(client)


class ChatSocket:
    """One chat tab, spoken to over Chainlit's socket. Use inside `async with`."""

    def __init__(
        self,
        server: Server,
        cookie: str,
        *,
        thread_id: str | None = None,
        session_id: str | None = None,
        headers: dict[str, str] | None = None,
        auth: dict[str, Any] | None = None,
        wait_started: bool = True,
    ) -> None:
        """`headers` are added to the handshake's (an Origin, a proxy's); `auth` replaces or adds to what a page
        sends; `wait_started=False` returns once connected, without waiting for the chat to start."""
        if socketio is None:
            pytest.skip(SOCKET_MISSING or "")
        self.server = server
        self.cookie = cookie
        self.thread_id = thread_id
        self.session_id = session_id or str(uuid.uuid4())
        self.headers = headers or {}
        self.auth = auth or {}
        self.wait_started = wait_started
        self.received: list[tuple[str, Any]] = []
        self.dropped = asyncio.Event()
        self._news = asyncio.Condition()
        self._sio = socketio.AsyncClient(reconnection=False)
        self._sio.on("*", self._on_event)
        self._sio.on("disconnect", self._on_disconnect)
        self.refusal: Any = None
        """What the server said when it refused the connection (Socket.IO's connect_error)."""
        self._sio.on("connect_error", self._on_refused)

    async def __aenter__(self) -> ChatSocket:
        await self._sio.connect(
            self.server.url,
            socketio_path=SOCKET_PATH,
            headers={"Cookie": self.cookie, **self.headers},
            transports=["websocket"],
            auth={
                "clientType": "webapp",
                "sessionId": self.session_id,
                "threadId": self.thread_id,
                "userEnv": "{}",
                "chatProfile": TEAM,
            }
            | self.auth,
            wait_timeout=WAIT_S,
        )
        await self._sio.emit("connection_successful")
        if self.wait_started:
            await self.wait_for(lambda: self._commands_set(), "the chat session to start")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sio.connected:
            await self._sio.disconnect()

    async def _on_event(self, event: str, data: Any = None) -> None:
        async with self._news:
            self.received.append((event, data))
            if event == "first_interaction":
                self.thread_id = data["thread_id"]
            self._news.notify_all()

    async def _on_refused(self, data: Any = None) -> None:
        self.refusal = data

    async def _on_disconnect(self, *reason: Any) -> None:
        self.dropped.set()
        async with self._news:
            self._news.notify_all()

    def _commands_set(self) -> bool:
        return any(event == "set_commands" for event, _ in self.received)

    async def say(self, text: str) -> None:
        message = {
            "id": str(uuid.uuid4()),
            "threadId": self.thread_id or "",
            "type": "user_message",
            "name": "user",
            "output": text,
            "createdAt": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        await self._sio.emit("client_message", {"message": message, "fileReferences": None})

    def texts(self) -> list[str]:
        """Every message the page was sent, as its final text."""
        return [
            data["output"]
            for event, data in self.received
            if event in ("new_message", "update_message") and isinstance(data, dict) and data.get("output")
        ]

    def runs_ended(self) -> int:
        return len(
            {
                data["id"]
                for event, data in self.received
                if event == "new_message" and str(data.get("output", "")).startswith("**Run ended**")
            }
        )

    async def wait_for(self, check: Callable[[], Any], what: str) -> Any:
        async def until() -> Any:
            async with self._news:
                while not (value := check()):
                    if self.dropped.is_set():
                        raise AssertionError(f"the socket was closed while waiting for {what}")
                    await self._news.wait()
                return value

        try:
            return await asyncio.wait_for(until(), WAIT_S)
        except TimeoutError:
            raise AssertionError(f"timed out after {WAIT_S:g} s waiting for {what}") from None

    async def run_to_end(self, text: str) -> None:
        """Send `text` as a new task and wait until its run has ended."""
        before = self.runs_ended()
        await self.say(text)
        await self.wait_for(lambda: self.runs_ended() > before, "the run to end")

    async def note(self, needle: str) -> str:
        """Wait for a message containing `needle`; return it."""
        return await self.wait_for(
            lambda: next((t for t in self.texts() if needle in t), None), f"a message saying {needle!r}"
        )


async def refused_socket(server: Server, cookie: str, **kw: Any) -> str:
    """Connect as a hostile tab would; return why the server refused (fails the test if it accepted)."""
    chat = ChatSocket(server, cookie, **kw)
    try:
        await chat.__aenter__()
    except socketio.exceptions.ConnectionError as exc:
        said = chat.refusal.get("message") if isinstance(chat.refusal, dict) else chat.refusal
        return f"{exc}: {said}" if said else str(exc)
    await chat.__aexit__()
    raise AssertionError(f"the server accepted the connection {kw}")


def server_log(server: Server) -> str:
    return server.log_path.read_text(encoding="utf-8", errors="replace")


__all__ = [
    "ROOT",
    "ChatSocket",
    "add_users",
    "cookie_of",
    "http",
    "local_cookie",
    "login",
    "refused_socket",
    "script",
    "serve_users",
    "server_log",
]
