"""What the web chat attaches to messages: the buttons of a decision, the files a tool wrote."""

from __future__ import annotations

from collections.abc import Sequence

import chainlit as cl
from chainlit.config import FILES_DIRECTORY

from ..events import ApprovalRequestEvent, EscalationEvent, Event, FileEvent
from ..projection import waiting_key
from ._art import usage_chart_svg
from ._controls import approval_buttons, button_id
from ._datalayer import card_step_id
from ._format import clip, position_label
from ._history import CHART_NAME, INLINE_LIMIT, data_url, shown_mime


def escalation_actions(ev: EscalationEvent, card: str) -> list[cl.Action]:
    """A button per position, then Continue and Write my own…, for the card whose step id is `card`."""
    key = {"escalation_id": ev.escalation_id}
    picks = [
        cl.Action(
            name="parley_pick",
            payload=key | {"choose": i},
            label=position_label(i, p.who),
            tooltip=clip(p.text, 200),
            icon="check",
            id=button_id(f"pick{i}", card),
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
            id=button_id("continue", card),
        ),
        cl.Action(
            name="parley_write",
            payload=key,
            label="Write my own…",
            tooltip="Type the answer the team goes on with",
            icon="pencil",
            id=button_id("write", card),
        ),
    ]


def actions_for(ev: Event, card: str) -> list[cl.Action]:
    """The buttons a decision offers on its card, whose step id is `card` (none for a question: the answer is
    typed)."""
    if isinstance(ev, ApprovalRequestEvent):
        return approval_buttons(ev, card)
    return escalation_actions(ev, card) if isinstance(ev, EscalationEvent) else []


def every_decision_button(thread_id: str, events: Sequence[Event], last: int = 50) -> list[cl.Action]:
    """The buttons the thread's last `last` decisions offered, settled or not: what a page may still hold of them
    (a removal sent on a socket the page had dropped never arrived)."""
    asked = [ev for ev in events if isinstance(ev, (ApprovalRequestEvent, EscalationEvent))][-last:]
    return [a for ev in asked for a in actions_for(ev, card_step_id(thread_id, waiting_key(ev) or ""))]


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
