"""The page's own files (Chainlit's built script and styles under /assets) served compressed once, not per request.

Chainlit compresses every response as it goes (its gzip middleware, at level 9), and its page is one 4.6 MB
script: each page load cost the server about 0.17 s of CPU compressing the same bytes again, and the browser had
to fetch it again, since Chainlit sends no caching headers. Here a file is compressed once and kept in memory
(the folder is Chainlit's build, fixed for the process), and a file whose name carries its content's hash (as
the build names its scripts and styles) may be kept by the browser for a year: a reload or a second tab takes it
from the browser's cache. Anything else, and any client that does not take gzip, goes on to Chainlit unchanged.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from chainlit.server import build_dir
from starlette.types import ASGIApp, Receive, Scope, Send

COMPRESSED = frozenset({".js", ".css", ".svg", ".json", ".map", ".html", ".txt"})
HASHED = re.compile(r"-[A-Za-z0-9_-]{8}\.(?:js|css)$")
"""The build's names for scripts and styles: `index-B2u6IBgX.js` changes whenever the file does."""
MAX_BYTES = 32 * 1024 * 1024
"""Larger files go on to Chainlit (none of the build's is near this)."""


@dataclass(frozen=True)
class _Packed:
    body: bytes
    etag: str
    media_type: str
    immutable: bool


class CompressedAssets:
    """ASGI middleware for GET and HEAD of `{root_path}/assets/NAME`, NAME a file directly in `folder`."""

    def __init__(self, app: ASGIApp, folder: Path | None = None, root_path: str = "") -> None:
        self.app = app
        self.folder = (folder or Path(build_dir) / "assets").resolve()  # default: Chainlit's page
        try:  # the build is fixed for the process: any other name goes on to Chainlit at once
            self._names = frozenset(p.name for p in self.folder.iterdir() if _plain(p.name) and p.is_file())
        except OSError:
            self._names = frozenset()
        self.prefix = f"{root_path.rstrip('/')}/assets/"
        self._packed: dict[str, _Packed] = {}
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        packed = await self._lookup(scope)
        if packed is None:
            await self.app(scope, receive, send)
            return
        fresh = packed.etag in (_header(scope, b"if-none-match") or "")
        headers = [
            (b"etag", packed.etag.encode()),
            (b"vary", b"Accept-Encoding"),
            (
                b"cache-control",
                b"public, max-age=31536000, immutable" if packed.immutable else b"no-cache",
            ),
        ]
        if not fresh:
            headers += [
                (b"content-type", packed.media_type.encode()),
                (b"content-encoding", b"gzip"),
                (b"content-length", str(len(packed.body)).encode()),
            ]
        await send({"type": "http.response.start", "status": 304 if fresh else 200, "headers": headers})
        body = b"" if fresh or scope["method"] == "HEAD" else packed.body
        await send({"type": "http.response.body", "body": body})

    async def _lookup(self, scope: Scope) -> _Packed | None:
        """The file the request asks for, compressed, or None to let Chainlit answer."""
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return None
        path: str = scope.get("path", "")
        name = path[len(self.prefix) :] if path.startswith(self.prefix) else ""
        if name not in self._names or not _takes_gzip(_header(scope, b"accept-encoding") or ""):
            return None
        if name not in self._packed:
            async with self._lock:  # two first requests compress it once
                packed = self._packed.get(name) or await asyncio.to_thread(self._pack, name)
                if packed is not None:  # only files there: a name asked for at random costs a look, no memory
                    self._packed[name] = packed
        return self._packed.get(name)

    def _pack(self, name: str) -> _Packed | None:
        file = self.folder / name
        try:
            if not file.is_file() or file.stat().st_size > MAX_BYTES:
                return None
            data = file.read_bytes()
        except (OSError, ValueError):  # ValueError: a NUL in the name
            return None
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if media.startswith("text/") or media in ("application/javascript", "application/json"):
            media += "; charset=utf-8"
        return _Packed(
            body=gzip.compress(data, compresslevel=9, mtime=0),
            etag=f'"{hashlib.sha256(data).hexdigest()[:32]}"',
            media_type=media,
            immutable=bool(HASHED.search(name)),
        )


def _plain(name: str) -> bool:
    """A name in the folder's listing (no separators there) of a file worth compressing, not a hidden one."""
    return not name.startswith(".") and Path(name).suffix in COMPRESSED


def _takes_gzip(accept: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (`gzip;q=0` refuses it)."""
    given = {}
    for part in accept.lower().split(","):
        coding, _, params = part.strip().partition(";")
        given.setdefault(coding.strip(), params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000"))
    return given.get("gzip", given.get("*", False))  # gzip named outright comes before `*`


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k.lower() == name), None)


__all__ = ["CompressedAssets"]
