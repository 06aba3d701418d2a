"""Every place the web chat works around Chainlit (2.x) by reaching into its internals, in one module.

Chainlit offers no option for any of these:
- its Socket.IO `connect` handler takes `auth.sessionId` and `auth.threadId` from the browser as they come;
  the session id names the folder `.files/<sessionId>` that Chainlit deletes with `rmtree` when the session
  ends, and the thread id names the conversation (and so its workspace). `install()` puts a check of both
  (ids of the server's own form, a UUID) in front of that handler, and keeps `files_dir` inside `.files`;
- its page (index.html) carries inline scripts: the content security policy allows exactly those, by hash;
- a file it serves at /project/file/ has its name only in the session that holds it.

`check()` says whether the installed Chainlit still behaves as all this assumes; the test
tests/security/test_hostile_client.py::test_chainlit_is_still_what_parley_patches calls it, so an upgrade that
changes any of it fails loudly instead of quietly reopening a hole.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, get_args
from urllib.parse import parse_qs

import chainlit.socket as _socket
import socketio
from chainlit import server as _server
from chainlit.config import FILES_DIRECTORY
from chainlit.config import config as _config
from chainlit.session import BaseSession, ClientType, WebsocketSession
from starlette.types import Scope

from ..paths import inside, is_server_id

log = logging.getLogger("parley.web")
CLIENT_TYPES = frozenset(get_args(ClientType))
_PATCHED = "_parley_checked"
_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
_HASHES_TTL_S = 2.0
_hashes: tuple[float, tuple[str, ...]] | None = None


def foreign_ids(auth: Any) -> str | None:
    """Why a socket's `auth` must be refused (a reason the page can show), or None if it is of the server's form."""
    if not isinstance(auth, dict):
        return "the connection carries no session details: reload the page"
    session_id = auth.get("sessionId")
    if not is_server_id(session_id):
        return f"session id {str(session_id)[:80]!r} is not of this server's form (a UUID): reload the page"
    thread_id = auth.get("threadId")
    if thread_id not in (None, "") and not is_server_id(thread_id):
        return f"thread id {str(thread_id)[:80]!r} is not of this server's form (a UUID): open the chat from its start page"
    if auth.get("clientType") not in CLIENT_TYPES:
        return f"client type {str(auth.get('clientType'))[:40]!r} is not one of {', '.join(sorted(CLIENT_TYPES))}"
    for key in ("chatProfile", "userEnv"):
        if auth.get(key) is not None and not isinstance(auth.get(key), str):
            return f"{key} must be text"
    user_env = auth.get("userEnv")
    if user_env:
        try:
            if not isinstance(json.loads(user_env), dict):
                raise ValueError
        except ValueError:
            return "userEnv must be a JSON object"
    return None


def install() -> None:
    """Check the ids every socket brings before Chainlit uses them; keep session folders inside `.files`."""
    handlers = _server.sio.handlers.get("/", {})
    original = handlers.get("connect")
    if original is None:
        raise RuntimeError("Chainlit registers no Socket.IO connect handler any more: parley cannot check the ids "
                           "a browser sends. Install the Chainlit version in pyproject.toml.")
    if not getattr(original, _PATCHED, False):  # imported again (Chainlit's watch mode): already in front

        @functools.wraps(original)
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> Any:
            why = foreign_ids(auth)
            if why is not None:
                log.warning("refused a socket: %s", why)
                raise socketio.exceptions.ConnectionRefusedError(why)
            return await original(sid, environ, auth)

        setattr(connect, _PATCHED, True)
        _server.sio.on("connect", connect)
    if not isinstance(BaseSession.__dict__.get("files_dir"), _FilesDir):
        BaseSession.files_dir = _FilesDir()  # type: ignore[assignment]


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
        found = tuple(dict.fromkeys(
            "sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            for body in _INLINE_SCRIPT.findall(html)))
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
    broken = []
    connect = _server.sio.handlers.get("/", {}).get("connect")
    if connect is None or not getattr(connect, _PATCHED, False):
        broken.append("parley's id check is not in front of Chainlit's Socket.IO connect handler")
    elif getattr(connect, "__wrapped__", None) is not _socket.connect:
        broken.append("the connect handler parley wraps is not chainlit.socket.connect")
    source = inspect.getsource(_socket.connect)
    for needle in ('auth["sessionId"]', 'auth.get("threadId"', "WebsocketSession("):
        if needle not in source:
            broken.append(f"chainlit.socket.connect no longer reads {needle}: check what ids it takes from the client")
    if list(inspect.signature(_socket.connect).parameters) != ["sid", "environ", "auth"]:
        broken.append("chainlit.socket.connect no longer takes (sid, environ, auth)")
    for cls in (WebsocketSession, *BaseSession.__subclasses__()):
        delete = inspect.getsource(cls.delete) if "delete" in cls.__dict__ else ""
        if delete and "rmtree" in delete and "self.files_dir" not in delete:
            broken.append(f"{cls.__name__}.delete removes a folder other than files_dir")
    if "FILES_DIRECTORY / self.id" not in inspect.getsource(BaseSession.persist_file) + _files_dir_source():
        broken.append("Chainlit's session files folder is no longer FILES_DIRECTORY / session id")
    if not isinstance(BaseSession.__dict__.get("files_dir"), _FilesDir):
        broken.append("BaseSession.files_dir is not parley's guarded property")
    if "asgi.scope" not in inspect.getsource(__import__("engineio.async_drivers.asgi", fromlist=["x"])):
        broken.append("Engine.IO's ASGI environ no longer carries 'asgi.scope' (the socket's peer address)")
    if not any(getattr(r, "path", "") == f"{_config.run.root_path}/project/file/{{file_id}}"
               for r in _server.router.routes):
        broken.append("Chainlit no longer serves message files at /project/file/{file_id}")
    if not callable(getattr(_server, "get_html_template", None)):
        broken.append("chainlit.server.get_html_template is gone: the page's inline scripts cannot be hashed")
    return broken


def _files_dir_source() -> str:
    """The source of Chainlit's own files_dir (parley replaced it on the class; Chainlit's text is in its module)."""
    return inspect.getsource(inspect.getmodule(BaseSession))  # type: ignore[arg-type]
