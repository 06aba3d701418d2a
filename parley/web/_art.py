"""Small generated pictures: a colour avatar per role (PNG) and the end-of-run chart (SVG)."""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Sequence
from html import escape
from pathlib import Path

from ..catalog import current_teams

PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#db2777", "#65a30d",
           "#7c3aed", "#ea580c", "#0d9488", "#4f46e5")  # fmt: skip


SYSTEM_COLOUR = "#6b7280"
_given: dict[str, str] = {}
"""The colour each speaker name has (its avatar file, shared by every team that has a speaker of that name)."""


def _assign(names: Sequence[str]) -> dict[str, str]:
    mine: dict[str, str] = {}
    for name in names:
        kept = _given.get(name)
        if name != "parley" and kept is not None and kept not in mine.values():
            mine[name] = kept
    for name in names:
        if name == "parley" or name in mine:
            continue
        free = [c for c in PALETTE if c not in mine.values()]
        mine[name] = free[0] if free else PALETTE[len(mine) % len(PALETTE)]  # more speakers than colours
    _given.update(mine)
    return mine


def _seed() -> None:
    """Start from the team files' speakers, each team in its order: every server of the same teams (replicas,
    restarts) gives the same colours whichever team it runs first, and the avatar files they share agree."""
    if _given:
        return
    for entry in current_teams():
        if entry.spec is not None:
            _assign(entry.spec.role_names)


def assign_colours(names: Sequence[str]) -> dict[str, str]:
    """A colour of its own for each of a team's speakers, given in the team's order. A name keeps the colour it
    already has (another team's avatar of the same name) unless an earlier speaker of this team has it."""
    _seed()
    return _assign(names)


def colour(name: str) -> str:
    """The speaker's colour (see assign_colours); parley's own notes are grey."""
    if name == "parley":
        return SYSTEM_COLOUR
    return _given.get(name) or PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


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
    return _disc(colour(name), size)


@functools.lru_cache(maxsize=64)
def _disc(colour_hex: str, size: int) -> bytes:
    """Drawn once per colour and size: every conversation a page starts writes its team's avatars."""
    hexa = colour_hex.lstrip("#")
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


def write_avatars(public: Path, names: Sequence[str]) -> None:
    """The avatar of each of a team's speakers (`names` in the team's order), each in a colour of its own."""
    assign_colours(names)
    folder = public / "avatars"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / avatar_file_name(name)
        picture = avatar_png(name)
        if _written.get(path) == picture and path.exists():
            continue  # as this process last wrote it
        if not path.exists() or path.read_bytes() != picture:
            path.write_bytes(picture)
        _written[path] = picture


_written: dict[Path, bytes] = {}
"""The avatar files this process has written or found as they should be, and what they hold."""


CHART_WIDTH = 640
_CHART_STYLE = (
    "<style>text{fill:#1f2937;font:16px system-ui,sans-serif}.t{font-weight:600}.n{fill:#4b5563}"
    "@media (prefers-color-scheme: dark){text{fill:#e5e7eb}.n{fill:#9ca3af}}</style>"
)
"""No background: the chat's own shows through. Its text follows the page's theme: the web chat's stylesheet
(public/parley.css) gives the page the colour scheme of its theme, and an SVG picture follows its page's."""


def usage_chart_svg(rows: list[tuple[str, int, int, int]]) -> str:
    """Horizontal bars per speaker: (name, prompt tokens, completion tokens, turns)."""
    if not rows:
        return ""
    bar_h, gap, label_w, top = 24, 12, 130, 44
    total_max = max(p + c for _, p, c, _ in rows) or 1
    height = top + len(rows) * (bar_h + gap)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" '
        f'viewBox="0 0 {CHART_WIDTH} {height}" role="img" aria-label="Tokens per speaker">',
        _CHART_STYLE,
        '<text class="t" x="8" y="22">Tokens per speaker</text>',
        f'<text class="n" x="{CHART_WIDTH - 8}" y="22" text-anchor="end">'
        '<tspan opacity="0.6">■</tspan> prompt  ■ completion</text>',
    ]
    span = CHART_WIDTH - label_w - 200
    for i, (name, prompt, completion, turns) in enumerate(rows):
        y = top + i * (bar_h + gap)
        wp = max(1, round(span * prompt / total_max)) if prompt else 0
        wc = max(1, round(span * completion / total_max)) if completion else 0
        shown = name if len(name) <= 13 else name[:12] + "…"
        parts += [
            f'<text x="8" y="{y + 17}">{escape(shown)}</text>',
            f'<rect x="{label_w}" y="{y}" width="{wp}" height="{bar_h}" rx="3" fill="{colour(name)}" opacity="0.55"/>',
            f'<rect x="{label_w + wp}" y="{y}" width="{wc}" height="{bar_h}" rx="3" fill="{colour(name)}"/>',
            f'<text class="n" x="{label_w + wp + wc + 8}" y="{y + 17}">{prompt:,} | {completion:,}'
            + (f" · {turns} turn{'s' if turns != 1 else ''}" if turns else "")
            + "</text>",
        ]
    parts.append("</svg>")
    return "".join(parts)
