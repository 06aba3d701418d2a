"""Every place the web chat works around Chainlit (2.x) by reaching into its internals, in one module.

Chainlit offers no option for any of these:
- its Socket.IO `connect` handler takes `auth.sessionId` and `auth.threadId` from the browser as they come;
  the session id names the folder `.files/<sessionId>` that Chainlit deletes with `rmtree` when the session
  ends, and the thread id names the conversation (and so its workspace). `install()` puts a check of both
  (ids of the server's own form, a UUID) in front of that handler, and keeps `files_dir` inside `.files`;
- its page (index.html) carries inline scripts: the content security policy allows exactly those, by hash;
- a file it serves at /project/file/ has its name only in the session that holds it;
- it accepts a login token while it is signed and unexpired: the `local` identity must stop working once local
  mode no longer holds (a user was created, the server bound elsewhere), a user's once their password changed or
  they were removed (the token carries their login stamp, signed in its metadata), a page's once its room is no
  longer shared with its user. `install()` screens the socket's connect and every event; `login_of()`,
  `without_login()` and `expired_login_cookies()` let the HTTP guard read and drop a token as Chainlit does.
- a session's configuration (`WebsocketSession.get_config`, called when every socket connects) runs the chat
  profiles callback through `run_until_complete` inside the running loop (Chainlit's CLI applies nest_asyncio):
  many connects at once nest until Python's recursion limit. parley's profiles carry no `config_overrides`, so
  `install()` makes every session use the global configuration;
- the run's display goes on from a background task, and moves to another page when a thread is reopened:
  `show_on()` points Chainlit's context (`init_ws_context`) at that page and detaches the run's messages from the
  step that was current (`local_steps`), so they do not nest under a finished `on_message`;
- a session a page takes over on a second socket as it starts is sent nothing on it, or a new chat where the
  page waits for a thread, or an idle chat too as it reopens one: see _chainlit_restore.py;
- it reads a reopened thread (`data_layer.get_thread`) before it calls `on_chat_resume`, and sends it to the page
  (`emitter.resume_thread`, which replaces every message on the page) after: a run still going sends messages in
  between, and the page loses them. `on_resume_sent()` lets the web chat put the thread as it has shown it in
  that message, and go on showing the run only once the page has it.

`check()` says whether Chainlit still behaves as all this assumes; tests/security/test_hostile_client.py calls it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qs

import chainlit.socket as _socket
import jwt
from chainlit import server as _server
from chainlit.auth import cookie as _cookie
from chainlit.auth.jwt import create_jwt, decode_jwt, get_jwt_secret
from chainlit.config import FILES_DIRECTORY, ChainlitConfig
from chainlit.config import config as _config
from chainlit.context import init_ws_context, local_steps
from chainlit.data import get_data_layer
from chainlit.emitter import ChainlitEmitter
from chainlit.message import ErrorMessage
from chainlit.session import BaseSession, WebsocketSession
from chainlit.types import ThreadDict
from chainlit.user_session import user_sessions
from socketio.exceptions import ConnectionRefusedError as SocketRefused
from starlette.requests import cookie_parser
from starlette.responses import Response
from starlette.types import Scope

from ..paths import inside
from . import _chainlit_restore as restore
from ._identity import LOGIN_STAMP, Login, foreign_ids

log = logging.getLogger("parley.web")
_PATCHED = "_parley_checked"
_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
_HASHES_TTL_S, _hashes = 2.0, cast("tuple[float, tuple[str, ...]] | None", None)
Rewrite = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""The reopened thread Chainlit is about to send a page -> the thread to send instead."""
Screen = Callable[[Login | None, dict[str, Any] | None, str | None], Awaitable[str | None]]
"""(login or None, the socket's environ, its page's thread or None) -> why it is refused now, or None."""
UNSCREENED_EVENTS = frozenset({"connect", "disconnect", "clear_session", "stop"})
"""Socket events that run whoever asks: connect is screened on its own; the others only end or stop things."""


def install(screen: Screen | None = None) -> None:
    """Check the ids every socket brings before Chainlit uses them; keep session folders inside `.files`.
    `screen` sees the login of every socket at connect (from its cookie) and at every event (the session's user):
    a login it refuses gets no session (a restored one included) and runs nothing, with the reason said."""
    handlers = _server.sio.handlers.get("/", {})
    original = handlers.get("connect")
    if original is None:
        raise RuntimeError(
            "Chainlit registers no Socket.IO connect handler any more: parley cannot check the ids "
            "a browser sends. Install the Chainlit version in pyproject.toml."
        )
    if not getattr(original, _PATCHED, False):  # imported again (Chainlit's watch mode): already in front

        @functools.wraps(original)
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> Any:
            why = foreign_ids(auth)
            if why is not None:
                log.warning("refused a socket: %s", why)
                raise SocketRefused(why)
            who = login_of(environ.get("HTTP_COOKIE"), None)
            if screen is not None:
                why = await screen(who, environ, None)
                if why is not None:
                    log.warning("refused a socket's login: %s", why)
                    raise SocketRefused(why)
            auth = await _own_threads_only(auth, who.name if who else None)
            await _restorable(auth)
            done = await original(sid, environ, auth)
            restore.listen(sid)
            return done

        setattr(connect, _PATCHED, True)
        _server.sio.on("connect", connect)
    restore.install()  # before the screen: it screens this step too; and Chainlit's resume_thread is watched:
    _socket.resume_thread = restore.tracking(_socket.resume_thread)
    if screen is not None:
        for event, handler in list(handlers.items()):
            if event not in UNSCREENED_EVENTS and not getattr(handler, _PATCHED, False):
                _server.sio.on(event, _screened(event, handler, screen))
    if not isinstance(BaseSession.__dict__.get("files_dir"), _FilesDir):
        BaseSession.files_dir = _FilesDir()  # type: ignore[assignment]
    if ChainlitEmitter.__dict__.get("resume_thread") is not _resume_thread:
        ChainlitEmitter.resume_thread = _resume_thread  # type: ignore[method-assign,assignment]
    if WebsocketSession.__dict__.get("get_config") is not _global_config:
        WebsocketSession.get_config = _global_config  # type: ignore[method-assign]


async def _own_threads_only(auth: dict[str, Any], who: str | None) -> dict[str, Any]:
    """A page that asks to resume another user's thread connects as a new chat rather than being refused:
    Chainlit's refusal leaves the page with "Could not reach the server" and a dead composer, while the thread
    route says in words that it is not theirs (parley/web/_guard.py)."""
    tid = auth.get("threadId")
    layer = get_data_layer()
    if not tid or who is None or layer is None:
        return auth
    author = await layer.get_thread_author(tid)
    if author and author != who:
        log.warning("a page signed in as %r asked for another user's thread: connected as a new chat", who)
        if len(_refused_resume) >= _MAX_REFUSED:  # sessions that connected and never started a chat
            _refused_resume.pop(next(iter(_refused_resume)))
        _refused_resume[str(auth.get("sessionId"))] = who
        return {**auth, "threadId": None}
    return auth


_MAX_REFUSED = 1000
_refused_resume: dict[str, str] = {}
"""Session id -> the login that asked it to resume someone else's thread (see `refused_resume`)."""


def refused_resume(session_id: str) -> str | None:
    """Who asked this session to resume a thread that is someone else's, once; None if nobody did. The page waits
    for that thread until it hears why not (Chainlit's `resume_thread_error`), then goes on as a new chat."""
    return _refused_resume.pop(session_id, None)


def _global_config(self: WebsocketSession) -> ChainlitConfig:
    """Every session's configuration: the global one (parley's chat profiles carry no overrides)."""
    return _config


_CHAINLIT_GET_CONFIG = WebsocketSession.get_config


def show_on(session: WebsocketSession | None = None) -> None:
    """From here on in this task, Chainlit's messages go to `session`'s page (None: the page they went to), and
    are not children of the step current where the task started (a finished `on_message`)."""
    if session is not None:
        init_ws_context(session)
    local_steps.set(None)


_resuming: dict[str, tuple[Rewrite, Callable[[], Awaitable[None]]]] = {}
"""Session id -> what to do when Chainlit sends that session its reopened thread (see `on_resume_sent`)."""


def on_resume_sent(session: WebsocketSession, rewrite: Rewrite, sent: Callable[[], Awaitable[None]]) -> None:
    """When Chainlit next sends `session` the thread it reopens (right after `on_chat_resume` returns): send
    `await rewrite(thread)` instead, then `await sent()` (also if sending failed), in Chainlit's handler for that
    page. A later call for the same session replaces this one."""
    _resuming[str(session.id)] = (rewrite, sent)


async def _resume_thread(self: ChainlitEmitter, thread_dict: Any) -> Any:
    hook = _resuming.pop(str(self.session.id), None)
    if hook is None:
        return await _CHAINLIT_RESUME_THREAD(self, thread_dict)
    rewrite, sent = hook
    try:
        return await _CHAINLIT_RESUME_THREAD(self, cast("ThreadDict", await rewrite(dict(thread_dict))))
    finally:
        await sent()


_CHAINLIT_RESUME_THREAD = ChainlitEmitter.resume_thread


async def _restorable(auth: dict[str, Any]) -> None:
    """A page starting a new chat (another team, New chat) sends `clear_session`, drops its socket and connects again
    with the same session id. Chainlit deletes the cleared session when the old socket's disconnect is handled; when
    the new socket connects first (a busy server), it restores the old one, whose chat has started: no new chat. A
    cleared session goes now (the socket gets a new one); another is restored showing the socket's thread."""
    session = WebsocketSession.get_by_id(auth["sessionId"])
    if session is not None and session.to_clear:
        user_sessions.pop(session.id, None)
        await session.delete()
    restore.follow_page(auth)


def _screened(
    event: str, handler: Callable[..., Awaitable[Any]], screen: Screen
) -> Callable[..., Awaitable[Any]]:
    """`handler`, run only while `screen` accepts the session's user and its page's thread: a socket connected while
    a login was good (local mode, before the first user was created), or its room shared, must not keep using it."""

    @functools.wraps(handler)
    async def screened(sid: str, *args: Any) -> Any:
        session = WebsocketSession.get(sid)
        why = await screen(_session_login(session), session.environ, session.thread_id) if session else None
        if session is None or WebsocketSession.get(sid) is None:  # gone, first or while the store answered:
            log.debug("dropped a socket's %s: its session has ended", event)  # Chainlit's handler would raise
            return None
        if why is None:
            return await handler(sid, *args)
        log.warning("refused a socket's %s: %s", event, why)
        try:  # say why in the page before the socket closes
            init_ws_context(session)
            await ErrorMessage(content=why).send()
        except Exception as exc:  # the socket may be gone already: closing it below is what matters
            log.debug("could not tell the page why: %s", exc)
        await _server.sio.disconnect(sid)
        return None

    setattr(screened, _PATCHED, True)
    return screened


# -- login tokens, read as Chainlit reads them --------------------------------------------------------------


def login_of(cookie_header: str | None, authorization: str | None) -> Login | None:
    """The login a request's token holds (signature and expiry checked, as Chainlit does: the cookie, else an
    `Authorization: Bearer` header), or None for no token or one Chainlit would refuse anyway."""
    token = _cookie.get_token_from_cookies(cookie_parser(cookie_header)) if cookie_header else None
    if not token and authorization:
        scheme, _, value = authorization.strip().partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
    if not token:
        return None
    try:
        user = decode_jwt(token)
    except Exception:  # expired, forged, no secret: Chainlit answers 401 itself
        return None
    return Login(str(user.identifier), str((user.metadata or {}).get(LOGIN_STAMP, "")))


def _session_login(session: WebsocketSession) -> Login | None:
    """A connected socket's login: its session's user, with the stamp of the token it connected with (read past its
    expiry, as Chainlit keeps a connected socket going; None if unreadable). None if the session has no user."""
    if (user := session.user) is None:
        return None
    token = _cookie.get_token_from_cookies(cookie_parser(str(session.environ.get("HTTP_COOKIE") or "")))
    try:
        claims = jwt.decode(token or "", get_jwt_secret() or "", ["HS256"], options={"verify_exp": False})
    except jwt.PyJWTError:  # forged, or no secret
        claims = {}
    stamp = (
        (claims.get("metadata") or {}).get(LOGIN_STAMP, "")
        if claims.get("identifier") == user.identifier
        else None
    )
    return Login(str(user.identifier), None if stamp is None else str(stamp))


def _is_login_cookie(name: str) -> bool:
    base = _cookie._auth_cookie_name
    return name == base or (name.startswith(base + "_") and name[len(base) + 1 :].isdigit())


def without_login(scope: Scope) -> Scope:
    """The request as if it carried no login token: no login cookie (whole or in chunks), no Authorization."""
    headers = []
    for key, value in scope.get("headers") or []:
        if key.lower() == b"authorization":
            continue
        if key.lower() == b"cookie":
            kept = [
                part
                for part in value.decode("latin-1").split(";")
                if part.strip() and not _is_login_cookie(part.split("=", 1)[0].strip())
            ]
            if not kept:
                continue
            value = ";".join(kept).strip().encode("latin-1")
        headers.append((key, value))
    return {**scope, "headers": headers}


def expired_login_cookies(cookie_header: str | None) -> list[tuple[str, bytes]]:
    """(name, Set-Cookie value) removing each login cookie the request carried, as Chainlit's sign-out does."""
    names = [n for n in cookie_parser(cookie_header or "") if _is_login_cookie(n)]
    expired = []
    for name in names:
        response = Response()
        response.delete_cookie(
            name,
            path=_cookie._cookie_path,
            secure=_cookie._cookie_secure,
            samesite=cast(Literal["lax", "strict", "none"], _cookie._cookie_samesite),
        )
        expired += [(name, v) for k, v in response.raw_headers if k == b"set-cookie"]
    return expired


def is_socket_route(path: str) -> bool:
    """Chainlit's Socket.IO endpoint (the polling transport's requests too): screened by `install`'s wrappers."""
    return path.startswith(f"{_config.run.root_path or ''}/ws/socket.io")


class _FilesDir:
    """`session.files_dir`, refused (ValueError) unless it is a folder strictly inside Chainlit's `.files`:
    Chainlit creates it on upload and deletes it with `rmtree` when the session ends."""

    def __get__(self, session: BaseSession | None, owner: type | None = None) -> Any:
        if session is None:
            return self
        return inside(FILES_DIRECTORY, str(session.id))


def inline_script_hashes() -> tuple[str, ...]:
    """'sha256-…' of each inline script in the page Chainlit serves (its template, with the theme and
    transports it fills in), recomputed every couple of seconds in case the configuration was reloaded."""
    global _hashes
    now = time.monotonic()
    if _hashes is None or now - _hashes[0] > _HASHES_TTL_S:
        html = _server.get_html_template("")
        found = tuple(
            dict.fromkeys(
                "sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
                for body in _INLINE_SCRIPT.findall(html)
            )
        )
        _hashes = (now, found)
    return _hashes[1]


def is_file_route(path: str) -> bool:
    """Chainlit's route for files a message carries (`/project/file/<id>?session_id=…`)."""
    root = _config.run.root_path or ""
    return path.startswith(f"{root}/project/file/")


def file_name(scope: Scope) -> str | None:
    """The name of the file a /project/file/ request asks for, as its session knows it."""
    file_id = scope.get("path", "").rsplit("/", 1)[-1]
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    session = WebsocketSession.get_by_id(query.get("session_id", [""])[0])
    entry = session.files.get(file_id) if session is not None else None
    name = Path(str(entry.get("name") or "")).name if entry else ""
    return name or None


def check() -> list[str]:
    """What no longer holds of the Chainlit behaviour this module relies on (empty: all of it holds)."""
    broken = _socket_checks() + _files_checks() + _login_checks() + _resume_checks() + _session_checks()
    broken += restore.check()
    if not callable(getattr(_server, "get_html_template", None)):
        broken.append("chainlit.server.get_html_template is gone: the page's inline scripts cannot be hashed")
    return broken


def _socket_checks() -> list[str]:
    """What no longer holds of Chainlit's socket connect handler, which takes ids from the browser."""
    broken = []
    connect = _server.sio.handlers.get("/", {}).get("connect")
    if connect is None or not getattr(connect, _PATCHED, False):
        broken.append("parley's id check is not in front of Chainlit's Socket.IO connect handler")
    elif getattr(connect, "__wrapped__", None) is not _socket.connect:
        broken.append("the connect handler parley wraps is not chainlit.socket.connect")
    source = inspect.getsource(_socket.connect)
    for needle in ('auth["sessionId"]', 'auth.get("threadId"', "WebsocketSession("):
        if needle not in source:
            broken.append(
                f"chainlit.socket.connect no longer reads {needle}: check what ids it takes from the client"
            )
    if list(inspect.signature(_socket.connect).parameters) != ["sid", "environ", "auth"]:
        broken.append("chainlit.socket.connect no longer takes (sid, environ, auth)")
    if "asgi.scope" not in inspect.getsource(__import__("engineio.async_drivers.asgi", fromlist=["x"])):
        broken.append("Engine.IO's ASGI environ no longer carries 'asgi.scope' (the socket's peer address)")
    return broken


def _files_checks() -> list[str]:
    """What no longer holds of where Chainlit keeps a session's files, and how it serves them."""
    broken = []
    for cls in (WebsocketSession, *BaseSession.__subclasses__()):
        delete = inspect.getsource(cls.__dict__["delete"]) if "delete" in cls.__dict__ else ""
        if delete and "rmtree" in delete and "self.files_dir" not in delete:
            broken.append(f"{cls.__name__}.delete removes a folder other than files_dir")
    if "FILES_DIRECTORY / self.id" not in inspect.getsource(BaseSession.persist_file) + _files_dir_source():
        broken.append("Chainlit's session files folder is no longer FILES_DIRECTORY / session id")
    if not isinstance(BaseSession.__dict__.get("files_dir"), _FilesDir):
        broken.append("BaseSession.files_dir is not parley's guarded property")
    if not any(
        getattr(r, "path", "") == f"{_config.run.root_path}/project/file/{{file_id}}"
        for r in _server.router.routes
    ):
        broken.append("Chainlit no longer serves message files at /project/file/{file_id}")
    return broken


def _files_dir_source() -> str:
    """The source of Chainlit's own files_dir (parley replaced it on the class; Chainlit's text is in its module)."""
    return inspect.getsource(inspect.getmodule(BaseSession))  # type: ignore[arg-type]


def _resume_checks() -> list[str]:
    """What no longer holds of how Chainlit restores a session and reopens a thread (see `_restorable` and
    `on_resume_sent`)."""
    broken = []
    if ChainlitEmitter.__dict__.get("resume_thread") is not _resume_thread:
        broken.append(
            "ChainlitEmitter.resume_thread is not parley's: a run still going would lose messages on a "
            "reopened page"
        )
    if 'self.emit("resume_thread"' not in inspect.getsource(_CHAINLIT_RESUME_THREAD):
        broken.append("Chainlit's emitter no longer sends a reopened thread as the resume_thread event")
    restore = inspect.getsource(_socket.restore_existing_session) + inspect.getsource(_socket.disconnect)
    for needle in (
        "WebsocketSession.get_by_id(session_id)",
        "session.to_clear",
        "user_sessions.pop(session.id)",
    ):
        if needle not in restore:
            broken.append(
                f"Chainlit no longer restores and clears sessions as parley assumes ({needle}): check that a "
                "page starting a new chat gets a new session"
            )
    source = inspect.getsource(_socket.connection_successful)
    order = [
        source.find(s)
        for s in (
            "resume_thread(context.session)",
            "config.code.on_chat_resume(thread)",
            "emitter.resume_thread(thread)",
        )
    ]
    if -1 in order or order != sorted(order):
        broken.append(
            "Chainlit no longer reads the thread, calls on_chat_resume, then sends the thread, in that "
            "order: check how a run still going is shown on a reopened page"
        )
    return broken


def _session_checks() -> list[str]:
    """What no longer holds of how Chainlit configures a session and tracks the current step (see `show_on`)."""
    broken = []
    if WebsocketSession.__dict__.get("get_config") is not _global_config:
        broken.append(
            "WebsocketSession.get_config is not parley's: many tabs connecting at once may nest the loop"
        )
    if "run_until_complete" not in inspect.getsource(_CHAINLIT_GET_CONFIG):
        broken.append(
            "Chainlit's get_config no longer nests the event loop: parley's replacement may not be needed"
        )
    if "self.get_config()" not in inspect.getsource(WebsocketSession.__init__):
        broken.append("Chainlit no longer configures a session with get_config when it is made")
    context = inspect.getsource(init_ws_context)
    if "WebsocketSession" not in context or "context_var.set" not in context:
        broken.append("chainlit.context.init_ws_context no longer points the context at a page's session")
    if not hasattr(local_steps, "set") or "local_steps.get()" not in inspect.getsource(
        __import__("chainlit.step", fromlist=["x"])
    ):
        broken.append("Chainlit no longer nests steps under chainlit.context.local_steps")
    return broken


def _login_checks() -> list[str]:
    """What no longer holds of how Chainlit reads logins (see `login_of`) and of the screen on its socket."""
    broken = []
    for name in ("client_message", "edit_message", "connection_successful"):
        if not getattr(_server.sio.handlers.get("/", {}).get(name), _PATCHED, False):
            broken.append(f"the socket's {name!r} handler is not screened for logins that no longer hold")
    if "get_token_from_cookies" not in inspect.getsource(_socket) or "decode_jwt" not in inspect.getsource(
        __import__("chainlit.auth", fromlist=["x"])
    ):
        broken.append("Chainlit no longer reads its login token as parley does (cookie, then decode_jwt)")
    if "data.to_dict()" not in inspect.getsource(create_jwt) or "HS256" not in inspect.getsource(create_jwt):
        broken.append(
            "Chainlit's login token no longer carries the user's metadata (HS256): a login made before a "
            "password change would hold after it"
        )
    if not isinstance(getattr(_cookie, "_auth_cookie_name", None), str):
        broken.append(
            "chainlit.auth.cookie._auth_cookie_name is gone: parley cannot drop a stale login cookie"
        )
    if "/ws/socket.io" not in inspect.getsource(_server):
        broken.append("Chainlit's socket is no longer served at /ws/socket.io")
    return broken
