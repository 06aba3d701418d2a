"""What the web chat checks on every request before Chainlit sees it.

- Local mode (no login page) is decided from facts: the address the server was told to bind and the
  peer address of the connection, as uvicorn reports them. Headers can only take local mode away
  (a Host that is not loopback: DNS rebinding; a proxy's forwarding header), never grant it.
- Origins: a request that carries an Origin (every browser sends one on a WebSocket handshake and on
  a cross-site or state-changing request) must come from the app's own origin, or from one listed in
  PARLEY_ALLOWED_ORIGINS. A request without Origin comes from a program, not from a page acting for a
  signed-in user on another site: it carries only the cookies its author gave it, and is let through.
- The no-login `local` identity holds only for a request for which local mode holds: a cookie handed out in
  local mode stops working on every route once a user exists or the server serves another address (the
  cookie is signed and lasts days; its secret outlives restarts).
- A user's login holds only while it carries that user's current login stamp (the store's; `parley users add`,
  `passwd` and `remove` replace it): a login of a user removed since, or made before their password changed or
  before they were removed and created again, stops working on every route, as the stale `local` one does. The
  store is asked on every request, so no replica lets a revoked login live on. Opening another user's conversation
  says so in words (HTTP 403) instead of Chainlit's bare 401, which the page reads as "signed out" and answers
  with a dead composer.
- One content security policy on every response (`script-src 'self'`, images from here only), and the
  files tools wrote are downloads unless they are pictures or plain text.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from chainlit.config import config as _chainlit_config
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store import Store
from . import _chainlit_fixes
from ._identity import Login
from .addresses import host_only, loopback, split_host

log = logging.getLogger("parley.web")

ORIGINS_ENV = "PARLEY_ALLOWED_ORIGINS"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"})
"""Pictures a browser shows as pictures and never runs. SVG is not among them: opened on its own, it runs scripts."""
LOCAL_USER = "local"
"""The identity of local mode (no login): the store refuses to create a user of that name."""
LOCAL_REFUSAL = "This server now requires login: sign in with your user."
"""Said to a request or socket still carrying the login local mode handed out, after local mode ended."""
GONE_REFUSAL = "This user no longer exists on this server: sign in with another user."
"""Said to a request still carrying the login of a user `parley users remove` deleted."""
ENDED_REFUSAL = (
    "Your sign-in has ended: your password was changed, or your user was removed, since you signed in. "
    "Sign in again."
)
"""Said to a request still carrying a login made before its user's `parley users passwd` (or `remove` and `add`)."""
NOT_YOURS = (
    "This conversation is not yours: it belongs to another user, and you are signed in as {user}. "
    "Start a new chat, or sign in as its owner to open it."
)
"""Said (HTTP 403) when a signed-in user opens a conversation of someone else's (a link, a shared id)."""
NOT_SHARED = (
    "This conversation is not shared with you (any more): its owner ended your access, or never gave it. "
    "Start a new chat."
)
"""Said on a page's socket when its user no longer has the conversation the page shows (a revoked member)."""
READ_ONLY = "You may watch this conversation: its owner shared it read-only. Nothing was sent to the team."
"""Said when a read-only member of a shared room writes (a message, a decision, Stop)."""
_THREAD_ROUTE = re.compile(r"/project/thread/[^/]+(/element/[^/]+)?")
FILE_POLICY = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
"""Tool-written files, even opened in a tab of their own: no script, no origin of the app's."""


@dataclass(frozen=True)
class Connection:
    """The facts about one HTTP request or socket: who connected, and which headers could only restrict."""

    peer: str
    """The client's address as uvicorn reports it ('' when unknown): the socket's peer, or, from a proxy on
    this machine (uvicorn trusts 127.0.0.1 and ::1), the address the proxy forwarded."""
    host_header: str | None
    forwarded: bool
    """A proxy's forwarding header was present: someone else's request relayed."""

    @classmethod
    def of(cls, scope: Scope) -> Connection:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        client = scope.get("client") or ("", 0)
        return cls(
            peer=str(client[0] or ""),
            host_header=headers.get("host"),
            forwarded=any(h in headers for h in _FORWARDING_HEADERS),
        )


CONNECTION: ContextVar[Connection | None] = ContextVar("parley_connection", default=None)
"""The request being served (set by WebGuard): Chainlit's header-auth callback receives headers only."""
LOGIN: ContextVar[str | None] = ContextVar("parley_login", default=None)
"""Who the HTTP request being served is signed in as (set by WebGuard; None: nobody, or a login it refused)."""


VIEWER: ContextVar[str | None] = ContextVar("parley_viewer", default=None)
"""Who is opening a conversation here, to read it (set by WebGuard for a GET and by `stale_login` for a socket's
connect and events): the data layer lets the members of a shared room read a thread by it. Never set for a request
that changes a thread (rename, delete): those stay the owner's."""


def viewer() -> str | None:
    """The signed-in user reading a conversation in what is being served (see VIEWER), or None."""
    return VIEWER.get()


def request_login() -> str | None:
    """The user the HTTP request being served is signed in as (its login token checked as Chainlit checks it), or
    None. Chainlit does not pass the user to its data layer's feedback calls: they read it here."""
    return LOGIN.get()


LocalMode = Callable[[Connection], Awaitable[bool]]
"""Whether local mode holds for a connection (the facts, and no users)."""
LoginStamp = Callable[[str], Awaitable[str | None]]
"""A user's current login stamp, or None if there is no such user (see `Store.login_stamp`)."""


async def stale_login(
    login: Login | None, conn: Connection | None, local_mode: LocalMode | None, login_stamp: LoginStamp | None
) -> str | None:
    """Why a login no longer holds (what to say), or None: the `local` login while local mode does not hold for the
    connection, or a user's login whose stamp is not the user's current one (removed, password changed). Checked
    on every HTTP request and socket event: nothing is cached, so a change holds at once on every replica."""
    why = await _login_refusal(login, conn, local_mode, login_stamp)
    # A socket's screen calls this before the connect and each event it lets through, in the same task: what the
    # handler then reads of a thread (a resume) is read as this login.
    VIEWER.set(login.name if login is not None and why is None else None)
    return why


async def _login_refusal(
    login: Login | None, conn: Connection | None, local_mode: LocalMode | None, login_stamp: LoginStamp | None
) -> str | None:
    if login is None:
        return None
    if login.name == LOCAL_USER:
        if local_mode is None:
            return None
        return None if conn is not None and await local_mode(conn) else LOCAL_REFUSAL
    if login_stamp is None:
        return None
    current = await login_stamp(login.name)
    if current is None:
        return GONE_REFUSAL
    return None if login.stamp == current else ENDED_REFUSAL


async def room_refusal(store: Store, user: str, thread_id: str | None, *, writing: bool) -> str | None:
    """Why `user`'s page may not go on with conversation `thread_id` (what to say), or None: they own it, or it was
    shared with them (to write, when `writing`: a message, a decision, Stop). A thread not stored yet is a new
    chat's, and refused nothing. The store is asked each time: a revoke holds at the next event."""
    if not thread_id:
        return None
    row = await store.get_thread(thread_id)
    if row is None or row.owner == user:
        return None
    role = await store.access(user, thread_id)
    if role is None:
        return NOT_SHARED
    return READ_ONLY if writing and role == "read" else None


def bind_host() -> str:
    """The address the server was told to listen on: `chainlit run --host` (or CHAINLIT_HOST) sets Chainlit's
    run config before it imports the app; `parley ui` passes its --host there too."""
    return str(_chainlit_config.run.host)


def bound_to_loopback() -> bool:
    hosts = [bind_host()]
    if "PARLEY_UI_HOST" in os.environ:  # `parley ui` says where it asked Chainlit to listen
        hosts.append(os.environ["PARLEY_UI_HOST"])
    return all(loopback(h) for h in hosts)


def local_connection(conn: Connection | None) -> bool:
    """The facts of local mode for one connection (users aside): bound to loopback, a loopback peer, no proxy
    relaying someone else, and a Host that names this machine (a page whose name was re-pointed at 127.0.0.1
    sends its own name: DNS rebinding)."""
    if conn is None or not bound_to_loopback() or not loopback(conn.peer) or conn.forwarded:
        return False
    if os.environ.get(ORIGINS_ENV, "").strip():
        # Other origins are named only for a proxy in front, and a proxy that adds no forwarding header makes
        # every client a loopback peer: such a deployment is never local.
        return False
    return conn.host_header is None or loopback(host_only(conn.host_header))


def connection_of_environ(environ: dict[str, Any] | None) -> Connection | None:
    """The connection behind a Chainlit socket session (its environ holds the ASGI scope of the handshake).
    Engine.IO's own REMOTE_ADDR is always '127.0.0.1' whatever the peer: never read it."""
    scope = (environ or {}).get("asgi.scope")
    return Connection.of(scope) if isinstance(scope, dict) else None


# -- origins ---------------------------------------------------------------------------------------------


def _origin_key(origin: str) -> tuple[str, int] | None:
    """('host', port) of an Origin, or None if it is not an http(s) origin ('null', garbage)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme]


def allowed_origins() -> frozenset[tuple[str, int]]:
    """The origins named in PARLEY_ALLOWED_ORIGINS (comma-separated), e.g. `https://chat.example.com`."""
    return _parse_origins(os.environ.get(ORIGINS_ENV, ""))


@functools.lru_cache(maxsize=4)
def _parse_origins(text: str) -> frozenset[tuple[str, int]]:
    keys = set()
    for item in text.split(","):
        if item.strip():
            key = _origin_key(item)
            if key is None:
                log.warning(
                    "%s: %r is not an origin like https://chat.example.com; ignored", ORIGINS_ENV, item
                )
            else:
                keys.add(key)
    return frozenset(keys)


def origin_allowed(origin: str, host_header: str | None) -> bool:
    """The page's origin is this app's: the host and port it asked for (the Host header, which a page
    cannot choose), or one the operator listed for a proxy in front."""
    key = _origin_key(origin)
    if key is None:
        return False
    if key in allowed_origins():
        return True
    if not host_header:
        return False
    host, port = split_host(host_header.strip())
    # No port in Host: the default one of the scheme the page was loaded with.
    return key == (
        host.lower(),
        int(port) if port.isdigit() else _DEFAULT_PORTS[urlsplit(origin.strip()).scheme],
    )


def origin_refusal(origin: str) -> str:
    origin = origin[:200]  # a header a client chose: bounded in the log
    return (
        f"refused a request from the page at {origin}: it is not this app's origin. If the app is served "
        f"at that address (behind a proxy), add it to {ORIGINS_ENV} (comma-separated), e.g. "
        f"{ORIGINS_ENV}={origin}"
    )


# -- the policy ------------------------------------------------------------------------------------------


def page_policy() -> str:
    """One policy for every page: scripts from this server only (Chainlit's own inline scripts by hash), pictures
    from here only (an image link an agent was tricked into writing must not make every reader's browser
    request it), no plugins, no foreign <base>, no framing by other sites."""
    scripts = " ".join(["'self'", *(f"'{h}'" for h in _chainlit_fixes.inline_script_hashes())])
    return (
        f"script-src {scripts}; img-src 'self' data: blob:; object-src 'none'; base-uri 'self'; "
        "frame-ancestors 'self'"
    )


def _file_headers(headers: list[tuple[bytes, bytes]], scope: Scope) -> list[tuple[bytes, bytes]]:
    """A tool-written file: pictures and plain text shown, anything else downloaded, never run from here."""
    mime = next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), "")
    base = mime.split(";")[0].strip().lower()
    kept = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-disposition")]
    if base in INLINE_IMAGES:
        return [*kept, (b"content-type", base.encode()), (b"content-disposition", b"inline")]
    if base == "text/plain":
        return [*kept, (b"content-type", b"text/plain; charset=utf-8"), (b"content-disposition", b"inline")]
    name = _chainlit_fixes.file_name(scope)
    disposition = "attachment" + (f"; filename*=UTF-8''{quote(name, safe='')}" if name else "")
    # Served as bytes: with nosniff, no browser runs them as a page, a script or a style sheet.
    return [
        *kept,
        (b"content-type", b"application/octet-stream"),
        (b"content-disposition", disposition.encode()),
    ]


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k.lower() == name), None)


class WebGuard:
    """ASGI middleware in front of all of Chainlit (its routes and its socket)."""

    def __init__(
        self, app: ASGIApp, local_mode: LocalMode | None = None, login_stamp: LoginStamp | None = None
    ) -> None:
        """`local_mode(conn)`: whether local mode holds for that request (the facts and no users); without it,
        the `local` login is never checked here. `login_stamp(name)`: the user's current login stamp, None if there
        is no such user; without it, users' logins are not checked here."""
        self.app = app
        self.local_mode = local_mode
        self.login_stamp = login_stamp
        self._told: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = Connection.of(scope)
        origin = _header(scope, b"origin")
        if origin is not None and not origin_allowed(origin, conn.host_header):
            await self._refuse(scope, receive, send, origin)
            return
        token = CONNECTION.set(conn)
        try:
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)  # the socket's login: _chainlit_fixes screens it
                return
            send = self._with_headers(scope, send)
            who = None
            if not _chainlit_fixes.is_socket_route(scope.get("path", "")):
                who = _chainlit_fixes.login_of(_header(scope, b"cookie"), _header(scope, b"authorization"))
            refusal = await stale_login(who, conn, self.local_mode, self.login_stamp)
            if refusal is not None:
                cookies = _header(scope, b"cookie")
                expired = _chainlit_fixes.expired_login_cookies(cookies)
                send = self._without_stale_login(scope, send, expired, refusal)
                scope = _chainlit_fixes.without_login(scope)
                who = None
            elif who is not None and self._thread_route(scope):
                send = _not_yours(send, who.name)
            login = LOGIN.set(who.name if who else None)
            reading = VIEWER.set(who.name if who and scope.get("method") in ("GET", "HEAD") else None)
            try:
                await self.app(scope, receive, send)
            finally:
                VIEWER.reset(reading)
                LOGIN.reset(login)
        finally:
            CONNECTION.reset(token)

    @staticmethod
    def _thread_route(scope: Scope) -> bool:
        root = _chainlit_config.run.root_path or ""
        path = str(scope.get("path", ""))
        return (
            scope.get("method") == "GET"
            and path.startswith(root)
            and bool(_THREAD_ROUTE.fullmatch(path[len(root) :]))
        )

    def _without_stale_login(
        self, scope: Scope, send: Send, expired: list[tuple[str, bytes]], refusal: str = LOCAL_REFUSAL
    ) -> Send:
        """Chainlit answers as to a request without a login (pages and the login form work; every route that
        needs a login says 401, with what to do), and the browser drops the stale cookie."""
        login_form = scope.get("path", "") == f"{_chainlit_config.run.root_path or ''}/login"
        replaced = False

        async def send_refusing(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                set_now = {
                    v.split(b"=", 1)[0].strip().decode("latin-1")
                    for k, v in headers
                    if k.lower() == b"set-cookie"
                }
                drop = [
                    (b"set-cookie", v) for name, v in expired if name not in set_now
                ]  # a fresh login wins
                if message.get("status") == 401 and not login_form:
                    replaced = True
                    await _send_json(send, 401, refusal, drop)
                    return
                message = {**message, "headers": headers + drop}
            elif replaced:
                return  # Chainlit's own 401 body: the refusal above was sent instead
            await send(message)

        return send_refusing

    def _with_headers(self, scope: Scope, send: Send) -> Send:
        is_file = scope.get("method") in ("GET", "HEAD") and _chainlit_fixes.is_file_route(
            scope.get("path", "")
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"content-security-policy", b"x-content-type-options")
                ]
                if is_file:  # a part (206) or a revalidation (304) too: a cache merges their headers
                    if message.get("status") in (200, 206):
                        headers = _file_headers(headers, scope)
                    headers.append((b"content-security-policy", FILE_POLICY.encode()))
                else:
                    headers.append((b"content-security-policy", page_policy().encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = headers
            await send(message)

        return send_with_headers

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, origin: str) -> None:
        why = origin_refusal(origin)
        if origin not in self._told and len(self._told) < 100:  # a hostile page must not flood the log
            self._told.add(origin)
            log.warning(why)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "origin not allowed"})  # HTTP 403
            return
        await _send_json(send, 403, why, [(b"content-security-policy", FILE_POLICY.encode())])


def _not_yours(send: Send, who: str) -> Send:
    """A signed-in user's request for a conversation: Chainlit's 401 there means "another user's" (its login was
    checked before). Said in words, as 403: the page shows the words and stays signed in, with a working chat."""
    replaced = False

    async def send_plainly(message: Message) -> None:
        nonlocal replaced
        if message["type"] == "http.response.start" and message.get("status") == 401:
            replaced = True
            await _send_json(send, 403, NOT_YOURS.format(user=who), message.get("headers", []))
            return
        if not replaced:
            await send(message)

    return send_plainly


async def _send_json(
    send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A whole JSON answer `{"detail": ...}` (what Chainlit's errors look like, and what the page shows), with
    `headers` besides its own content type and length."""
    body = json.dumps({"detail": detail}).encode()
    kept = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-length")]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *kept,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
