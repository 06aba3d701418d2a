"""What a reopened thread shows besides its messages: pictures, downloads and the usage chart, rebuilt from the
stored events as the live chat showed them (Chainlit's element dicts), and the run's meter.

A file is read again from the thread's own workspace, by the name the event gave it relative to that folder:
never from a path outside it, whatever the stored event says. The elements travel inside the thread, which
Chainlit hands only to the thread's owner (it checks the author before resuming a thread or serving it).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from ..events import FileEvent
from ..paths import data_dir_path, inside, is_server_id
from ..projection import Projection
from ._art import usage_chart_svg

INLINE_LIMIT = 2_000_000
"""Files up to this size come back in a reopened thread (as the live chat sends them: inline data)."""
CHART_NAME = "tokens-per-speaker.svg"
METER_TITLE = "Meter"


def workspace_of(thread_id: str) -> Path | None:
    """The thread's workspace folder (it may not exist), or None for an id that cannot name one."""
    if not is_server_id(thread_id):
        return None
    try:
        return inside(data_dir_path() / "workspaces", thread_id)
    except ValueError:
        return None


def stored_file(thread_id: str, ev: FileEvent) -> Path | None:
    """The file `ev` names, inside the thread's workspace only, if it is still there and small enough."""
    root = workspace_of(thread_id)
    if root is None:
        return None
    try:
        path = inside(root, ev.name)
    except ValueError:
        return None
    try:
        if not path.is_file() or path.stat().st_size > INLINE_LIMIT:
            return None
    except OSError:
        return None
    return path


def file_gone_text(ev: FileEvent) -> str:
    """Why a reopened thread shows no picture or download under a file's message."""
    if ev.size > INLINE_LIMIT:
        return f"\n\n*Too large to show again here (over {INLINE_LIMIT // 1_000_000} MB).*"
    return "\n\n*No longer in the conversation's workspace.*"


def shown_mime(ev: FileEvent) -> str:
    """The type a file is sent with: pictures and plain text as they are, anything else as a download."""
    if ev.mime.startswith("image/") or ev.mime.split(";")[0] == "text/plain":
        return ev.mime
    return "application/octet-stream"


def data_url(content: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode()}"


def file_element(thread_id: str, step_id: str, ev: FileEvent) -> dict[str, Any] | None:
    """The picture or download a FileEvent showed under its message, or None when the file is gone."""
    path = stored_file(thread_id, ev)
    if path is None:
        return None
    try:
        content = path.read_bytes()
    except OSError:
        return None
    mime = shown_mime(ev)
    return {
        "id": f"{step_id}-file",
        "threadId": thread_id,
        "type": "image" if ev.mime.startswith("image/") else "file",
        "name": ev.name.replace("/", "_"),
        "display": "inline",
        "url": data_url(content, mime),
        "mime": mime,
        "forId": step_id,
    }


def chart_element(
    thread_id: str, step_id: str, rows: list[tuple[str, int, int, int]]
) -> dict[str, Any] | None:
    """The run's tokens-per-speaker chart under its "Run ended" message (None when nobody used tokens)."""
    svg = usage_chart_svg(rows)
    if not svg:
        return None
    return {
        "id": f"{step_id}-chart",
        "threadId": thread_id,
        "type": "image",
        "name": CHART_NAME,
        "display": "inline",
        "url": data_url(svg.encode(), "image/svg+xml"),
        "mime": "image/svg+xml",
        "forId": step_id,
    }


def side_text(thread_id: str, element_id: str, name: str, text: str, for_id: str) -> dict[str, Any]:
    """A text shown in the side panel (Chainlit opens the panel with every such element, titled by the last)."""
    return {
        "id": element_id,
        "threadId": thread_id,
        "type": "text",
        "name": name,
        "display": "side",
        "url": text_url(text),
        "mime": "text/plain",
        "forId": for_id,
    }


def text_url(text: str) -> str:
    return data_url(text.encode(), "text/plain;charset=utf-8")


def meter_id(thread_id: str) -> str:
    """The id of the meter a reopened thread shows; the live meter replaces it."""
    return f"{thread_id}-meter"


def meter_block(prompt: int, completion: int, cost: float | None, selector: int | None, state: str) -> str:
    """The meter's text in the side panel."""
    return f"**{METER_TITLE}** · {state}\n\n{meter_words(prompt, completion, cost, selector)}"


def meter_element(thread_id: str, run: Projection, for_id: str) -> dict[str, Any] | None:
    """The side panel's meter for a reopened thread: its last run's totals (None if it used no tokens)."""
    prompt, completion, cost, selector = meter_of(run)
    if not (prompt or completion):
        return None
    state = "running" if run.result is None else "last run"
    block = meter_block(prompt, completion, cost, selector, state)
    return side_text(thread_id, meter_id(thread_id), meter_title(prompt, completion, cost), block, for_id)


def meter_words(prompt: int, completion: int, cost: float | None, selector: int | None) -> str:
    """The meter's line: a run's tokens (the selector's share) and its cost."""
    sel = f" (selector {selector:,})" if selector else ""
    money = "cost unknown" if cost is None else f"${cost:.4f}"
    return f"**{prompt:,}** prompt + **{completion:,}** completion tokens{sel} · {money}"


def meter_title(prompt: int, completion: int, cost: float | None) -> str:
    """The side panel's title: the meter in a few words, readable at a glance."""
    money = "" if cost is None else f" · ${cost:.4f}"
    return f"{METER_TITLE} · {prompt + completion:,} tokens{money}"


def meter_of(projection: Projection) -> tuple[int, int, float | None, int | None]:
    """(prompt, completion, cost, selector tokens) of the run `projection` has seen."""
    selector = projection.usage.get("selector")
    return (
        projection.prompt_tokens,
        projection.completion_tokens,
        projection.cost_usd,
        selector.prompt_tokens + selector.completion_tokens if selector else None,
    )
