"""What the web chat attaches to messages: the buttons of a decision, the files a tool wrote."""

from __future__ import annotations

import chainlit as cl
from chainlit.config import FILES_DIRECTORY

from ..events import ApprovalRequestEvent, EscalationEvent, Event, FileEvent
from ._art import usage_chart_svg
from ._format import clip, position_label
from ._history import CHART_NAME, INLINE_LIMIT, data_url, shown_mime


def approval_actions(ev: ApprovalRequestEvent) -> list[cl.Action]:
    return [
        cl.Action(name="parley_approve", payload={"request_id": ev.request_id}, label="Approve"),
        cl.Action(name="parley_deny", payload={"request_id": ev.request_id}, label="Deny…"),
    ]


def escalation_actions(ev: EscalationEvent) -> list[cl.Action]:
    """A button per position, then Continue and Write my own…"""
    key = {"escalation_id": ev.escalation_id}
    picks = [
        cl.Action(
            name="parley_pick",
            payload=key | {"choose": i},
            label=position_label(i, p.who),
            tooltip=clip(p.text, 200),
            icon="check",
        )
        for i, p in enumerate(ev.positions, 1)
    ]
    return [
        *picks,
        cl.Action(
            name="parley_continue",
            payload=key,
            label="Continue",
            tooltip="The team goes on as it is",
            icon="play",
        ),
        cl.Action(
            name="parley_write",
            payload=key,
            label="Write my own…",
            tooltip="Type the answer the team goes on with",
            icon="pencil",
        ),
    ]


def actions_for(ev: Event) -> list[cl.Action]:
    """The buttons a waiting decision offers (none for a question: the answer is typed)."""
    if isinstance(ev, ApprovalRequestEvent):
        return approval_actions(ev)
    return escalation_actions(ev) if isinstance(ev, EscalationEvent) else []


def file_element(ev: FileEvent) -> cl.Element:
    """Pictures inline; anything else as a download.

    Elements travel as data URLs where they are small enough: Chainlit keeps saved element
    content under `<app root>/.files`, which it deletes when any server of the same checkout
    stops (two replicas, or `make run` twice).
    """
    name = ev.name.replace("/", "_")
    kind = cl.Image if ev.mime.startswith("image/") else cl.File
    if ev.size <= INLINE_LIMIT:
        # A download carries no type a browser would render (a page, a script): the name says what it is.
        # Larger files go through /project/file/, where parley's guard does the same (see _guard).
        shown = shown_mime(ev)
        with open(ev.path, "rb") as f:
            return kind(url=data_url(f.read(), shown), name=name, display="inline", mime=shown)
    # Chainlit makes the session's own folder inside `.files` when it saves the file, but not `.files` itself
    # (gone if another server of this checkout stopped).
    FILES_DIRECTORY.mkdir(parents=True, exist_ok=True)
    return kind(path=ev.path, name=name, display="inline", mime=ev.mime)


def usage_chart(rows: list[tuple[str, int, int, int]]) -> list[cl.Element]:
    """The run's tokens per speaker as a picture (none when nobody used any): (speaker, prompt, completion, turns)."""
    svg = usage_chart_svg(rows)
    if not svg:
        return []
    return [
        cl.Image(
            url=data_url(svg.encode(), "image/svg+xml"),
            name=CHART_NAME,
            display="inline",
            mime="image/svg+xml",
        )
    ]
