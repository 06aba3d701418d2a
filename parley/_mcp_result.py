"""What an MCP tool's result becomes for the model and the human: text, never raw JSON content blocks.

Text blocks are joined as text; an image (or audio, or a binary resource) is saved as a file in the role's
workspace and described in one line ("image/png, 640×480, saved as X.png"); an embedded resource is its
text under its URI; a result longer than the server's `max_result_chars` is cut, and the cut is said.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import mimetypes
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from mcp import types

__all__ = ["Converted", "cap", "convert"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_BINARY = 20 * 1024 * 1024
"""Bytes of one image, audio clip or binary resource kept as a file; a larger one is only described."""


@dataclass
class Converted:
    text: str
    files: list[Path] = field(default_factory=list[Path])
    images: list[Path] = field(default_factory=list[Path])
    """Raster images among `files`: a model that accepts images may be shown them."""


def cap(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with the cut stated."""
    if len(text) <= limit:
        return text
    return (
        f"{text[:limit]}\n[cut: the result has {len(text):,} characters; only the first {limit:,} are shown "
        "(the MCP server's max_result_chars)]"
    )


def _size(data: bytes) -> str:
    if (
        data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    ):  # read off the header: PIL refuses some PNGs
        width, height = struct.unpack(">II", data[16:24])
        return f"{width}×{height}"
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return f"{im.width}×{im.height}"
    except Exception:  # not an image PIL reads: say its size in bytes instead
        return f"{len(data):,} bytes"


class _Saver:
    def __init__(self, folder: Path | None, stem: str) -> None:
        self.folder = folder
        self.stem = _SAFE.sub("-", stem)[:80] or "result"
        self.files: list[Path] = []

    def save(self, data: bytes, mime: str) -> Path | None:
        if self.folder is None:
            return None
        ext = mimetypes.guess_extension(mime) or ".bin"
        n = 1
        while (path := self.folder / f"{self.stem}-{n}{ext}").exists():
            n += 1
        path.write_bytes(data)
        self.files.append(path)
        return path


def _binary(saver: _Saver, b64: str, mime: str, what: str) -> tuple[str, Path | None]:
    size = len(b64) * 3 // 4 - b64[-2:].count("=")  # what it decodes to, without decoding it
    if size > MAX_BINARY:
        return (
            f"[{what}: {mime}, about {size:,} bytes, too large to keep (the limit is {MAX_BINARY:,})]",
            None,
        )
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return f"[{what}: {mime}, not valid base64; dropped]", None
    path = saver.save(data, mime)
    size = _size(data) if mime.startswith("image/") else f"{len(data):,} bytes"
    where = f"saved as {path.name}" if path is not None else "not saved (no workspace)"
    return f"[{what}: {mime}, {size}, {where}]", path


def convert(result: types.CallToolResult, *, limit: int, folder: Path | None, stem: str) -> Converted:
    """The result as text (capped at `limit`), with binary parts saved in `folder` as `STEM-N.EXT`."""
    saver = _Saver(folder, stem)
    parts: list[str] = []
    images: list[Path] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent):
            text, path = _binary(saver, block.data, block.mimeType, "image")
            parts.append(text)
            if path is not None and block.mimeType in ("image/png", "image/jpeg", "image/gif", "image/webp"):
                images.append(path)
        elif isinstance(block, types.AudioContent):
            parts.append(_binary(saver, block.data, block.mimeType, "audio")[0])
        elif isinstance(block, types.EmbeddedResource):
            res = block.resource
            if isinstance(res, types.TextResourceContents):
                parts.append(f"[resource {res.uri}]\n{res.text}")
            else:
                text, _ = _binary(
                    saver, res.blob, res.mimeType or "application/octet-stream", f"resource {res.uri}"
                )
                parts.append(text)
        elif isinstance(block, types.ResourceLink):
            about = f": {block.description}" if block.description else ""
            parts.append(f"[resource link {block.uri} ({block.name}){about}]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    return Converted(text=cap("\n".join(parts), limit), files=saver.files, images=images)
