"""Documents: search the bundled knowledge base; read and write files in the conversation's workspace."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import tempfile
import threading
from contextlib import closing
from pathlib import Path
from typing import Annotated

from parley.paths import data_dir, inside
from parley.tools import current_context, tool

KB_DIR = Path(__file__).with_name("kb")
MAX_READ = 100_000
MAX_WRITE = 1_000_000
_lock = threading.Lock()


def _kb_files() -> list[Path]:
    return sorted(KB_DIR.glob("*.md"))


def _kb_index() -> Path:
    """An SQLite full-text index of the knowledge base, rebuilt when the documents change."""
    files = _kb_files()
    digest = hashlib.sha1(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()[:12]
    path = data_dir() / f"kb-{digest}.db"
    with _lock:
        if path.exists():
            return path
        fd, tmp = tempfile.mkstemp(prefix=".kb.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        with closing(sqlite3.connect(tmp)) as conn, conn:
            conn.execute("CREATE VIRTUAL TABLE docs USING fts5(doc, title, section, body, tokenize='porter')")
            for file in files:
                for title, section, body in _sections(file):
                    conn.execute("INSERT INTO docs VALUES (?, ?, ?, ?)", (file.stem, title, section, body))
        os.replace(tmp, path)
    return path


def _sections(file: Path) -> list[tuple[str, str, str]]:
    text = file.read_text(encoding="utf-8")
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), file.stem)
    parts = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip() and not p.startswith("# ")]
    return [(title, f"{i + 1}", part) for i, part in enumerate(parts)]


@tool(family="documents")
def kb_search(query: Annotated[str, "Words to look for, e.g. 'refund damaged monitor'"]) -> str:
    """Search the company knowledge base (policies, product documentation) and return the best passages."""
    words = re.findall(r"\w+", query.lower())
    if not words:
        return "Give some words to search for."
    match = " OR ".join(f'"{w}"' for w in words)
    with closing(sqlite3.connect(_kb_index())) as conn:
        rows = conn.execute(
            "SELECT doc, title, body FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT 5", (match,)
        ).fetchall()
    if not rows:
        return f"Nothing in the knowledge base matches {query!r}. Documents: " + ", ".join(
            p.stem for p in _kb_files()
        )
    return "\n\n".join(f"[{doc}] {title}:\n{body}" for doc, title, body in rows)


def _inside(relative: str) -> Path:
    """Resolve `relative` inside the workspace, or explain why it may not be used."""
    root = current_context().workspace.resolve()
    if not relative or relative.strip() in (".", "./"):
        return root
    candidate = Path(relative)
    if candidate.is_absolute():
        raise ValueError(
            f"{relative!r} is an absolute path: use a path inside the workspace, like 'notes/q3.md'"
        )
    if (root / candidate).resolve() == root:
        return root
    try:
        return inside(root, candidate)
    except ValueError:
        raise ValueError(
            f"{relative!r} leaves the workspace: use a path inside it, like 'notes/q3.md'"
        ) from None


@tool(family="documents")
def read_file(path: Annotated[str, "A path inside the workspace, e.g. 'drafts/post.md'"]) -> str:
    """Read a text file from this conversation's workspace."""
    try:
        target = _inside(path)
    except ValueError as exc:
        return f"Refused: {exc}"
    if not target.is_file():
        return f"No file {path!r} in the workspace. Call list_files to see what is there."
    data = target.read_bytes()
    text = data[:MAX_READ].decode("utf-8", errors="replace")
    more = f"\n… {len(data) - MAX_READ:,} more bytes not shown" if len(data) > MAX_READ else ""
    return text + more


@tool(family="documents")
def write_file(
    path: Annotated[str, "A path inside the workspace, e.g. 'drafts/post.md'"],
    content: Annotated[str, "The whole text of the file"],
) -> str:
    """Write (or replace) a text file in this conversation's workspace."""
    try:
        target = _inside(path)
    except ValueError as exc:
        return f"Refused: {exc}"
    if target == current_context().workspace.resolve():
        return "Refused: give a file name, like 'drafts/post.md'."
    encoded = content.encode("utf-8")
    if len(encoded) > MAX_WRITE:
        return f"Refused: {len(encoded):,} bytes is more than the {MAX_WRITE:,} a file may hold."
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encoded)
    return f"Wrote {path} ({len(encoded):,} bytes)."


@tool(family="documents")
def list_files(path: Annotated[str, "A folder inside the workspace; '.' for all"] = ".") -> str:
    """List the files in this conversation's workspace."""
    try:
        folder = _inside(path)
    except ValueError as exc:
        return f"Refused: {exc}"
    root = current_context().workspace.resolve()
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    if not files:
        return "The workspace is empty." if folder == root else f"No files under {path!r}."
    return "\n".join(f"{p.relative_to(root)} ({p.stat().st_size:,} bytes)" for p in files)
