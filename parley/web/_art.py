"""Small generated pictures: a colour avatar per role (PNG) and the end-of-run chart (SVG)."""

from __future__ import annotations

import struct
import zlib
from html import escape
from pathlib import Path

PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#db2777", "#65a30d",
           "#7c3aed", "#ea580c", "#0d9488", "#4f46e5")  # fmt: skip


SYSTEM_COLOUR = "#6b7280"


def colour(name: str) -> str:
    """A stable colour per speaker name; parley's own notes are grey."""
    if name == "parley":
        return SYSTEM_COLOUR
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def _png(width: int, height: int, rgba: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + rgba[y * width * 4 : (y + 1) * width * 4] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def avatar_png(name: str, size: int = 64) -> bytes:
    """A filled disc in the speaker's colour, with a lighter ring: tells speakers apart at a glance."""
    hexa = colour(name).lstrip("#")
    r, g, b = (int(hexa[i : i + 2], 16) for i in (0, 2, 4))
    light = tuple(min(255, c + (255 - c) // 2) for c in (r, g, b))
    centre = (size - 1) / 2
    pixels = bytearray()
    for y in range(size):
        for x in range(size):
            d = ((x - centre) ** 2 + (y - centre) ** 2) ** 0.5
            if d <= size / 2 - 1:
                pixels += bytes((*light, 255)) if d > size / 2 - 7 else bytes((r, g, b, 255))
            else:
                pixels += b"\x00\x00\x00\x00"
    return _png(size, size, bytes(pixels))


def avatar_file_name(name: str) -> str:
    """Chainlit looks up `public/avatars/<name>.png`, lower-cased, spaces and dots as underscores."""
    return name.strip().lower().replace(" ", "_").replace(".", "_") + ".png"


def write_avatars(public: Path, names: list[str]) -> None:
    folder = public / "avatars"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / avatar_file_name(name)
        picture = avatar_png(name)
        if not path.exists() or path.read_bytes() != picture:
            path.write_bytes(picture)


def usage_chart_svg(rows: list[tuple[str, int, int, int]]) -> str:
    """Horizontal bars per speaker: (name, prompt tokens, completion tokens, turns)."""
    if not rows:
        return ""
    width, bar_h, gap, label_w = 560, 22, 10, 110
    total_max = max(p + c for _, p, c, _ in rows) or 1
    height = 34 + len(rows) * (bar_h + gap)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="8" y="18" font-weight="bold">Tokens per speaker (prompt | completion) and turns</text>',
    ]
    span = width - label_w - 150
    for i, (name, prompt, completion, turns) in enumerate(rows):
        y = 30 + i * (bar_h + gap)
        wp = max(1, round(span * prompt / total_max)) if prompt else 0
        wc = max(1, round(span * completion / total_max)) if completion else 0
        parts += [
            f'<text x="8" y="{y + 15}">{escape(name)}</text>',
            f'<rect x="{label_w}" y="{y}" width="{wp}" height="{bar_h}" fill="{colour(name)}" opacity="0.55"/>',
            f'<rect x="{label_w + wp}" y="{y}" width="{wc}" height="{bar_h}" fill="{colour(name)}"/>',
            f'<text x="{label_w + wp + wc + 6}" y="{y + 15}">{prompt:,} | {completion:,}'
            + (f" · {turns} turn{'s' if turns != 1 else ''}" if turns else "")
            + "</text>",
        ]
    parts.append("</svg>")
    return "".join(parts)
