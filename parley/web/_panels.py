"""The web chat's side panel: the run's token meter, always in view, and the team's shared notes.

Chainlit opens its side panel with every element of the chat shown "side", titled by the last of them, and
closes it when there is none. The meter is such an element, sent again (last) whenever it changes, so the panel
stays open through the run with the meter as its title; each note added brings the board as it stands. A reopened
thread gets the same elements from the data layer (see _history).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import chainlit as cl

from ..conversation import Conversation
from ._format import NOTES, SYSTEM, notes_added_text, notes_text
from ._history import meter_block, meter_id, meter_title, text_url

METER_EVERY_S = 0.5


class Meter:
    """The run's tokens and cost so far in the side panel, updated at most every METER_EVERY_S, and its final
    totals when it ends."""

    def __init__(self) -> None:
        self.at = 0.0
        self.started = False
        self.sent = 0
        self.shown: str | None = None
        """The id of the last meter sent (a reopened thread's is the stored one's)."""
        self.fresh = True
        """No meter sent since the last reset."""
        self.last = False
        """The last meter sent is still the panel's last element: the next one takes its place (one socket event
        instead of two). A note's board sent to the panel after it puts the next one last again."""

    def reset(self) -> None:
        """The next update starts afresh (a new run, or a page that took the run over)."""
        self.started = False
        self.fresh = True
        self.last = False

    async def update(self, prompt: int, completion: int, cost: float | None, conv: Conversation) -> None:
        now = time.monotonic()
        if self.started and now - self.at < METER_EVERY_S:
            return
        self.at, self.started = now, True
        await self._show(prompt, completion, cost, conv, "running")

    async def finish(self, prompt: int, completion: int, cost: float | None, conv: Conversation) -> None:
        """The run's final totals, whenever the last update was."""
        if self.started or prompt or completion:
            await self._show(prompt, completion, cost, conv, "last run")

    async def _show(
        self, prompt: int, completion: int, cost: float | None, conv: Conversation, state: str
    ) -> None:
        tid = conv.thread_id or ""
        selector = conv.meter.by_source().get("selector")
        block = meter_block(prompt, completion, cost, sum(selector) if selector else None, state)
        if not self.last or self.shown is None:
            # The old meter goes first: the new one comes last, so the panel keeps the meter as its title. A
            # run's first meter also takes away a reopened thread's (the page may show that one, or the last
            # run's). A meter still last is replaced where it is instead (the page swaps an element it has).
            for old in (meter_id(tid) if self.fresh else None, self.shown):
                if old is not None:
                    await cl.context.emitter.emit("remove_element", {"id": old})
            self.sent += 1
            self.shown = f"{meter_id(tid)}-{self.sent}"
        self.fresh = False
        self.last = True
        meter = cl.Text(
            id=self.shown,
            name=meter_title(prompt, completion, cost),
            url=text_url(block),
            display="side",
            mime="text/plain",
            thread_id=tid,
        )
        await meter.send(for_id="")


class NotesPanel:
    """The team's shared notes (team_notes): a message per note added, whose link opens the board as it stands
    in the side panel."""

    def __init__(self, meter: Meter) -> None:
        self.shown = 0
        self.meter = meter
        """The panel's meter, no longer its last element once a board is sent after it."""

    async def show(self, role: str, notes: Sequence[dict[str, Any]]) -> None:
        """A note in the chat (its link reopens the panel) and the board in the panel, once per note added."""
        if len(notes) == self.shown:
            return
        self.shown = len(notes)
        self.meter.last = False  # before the board goes: a send cut short may still have reached the page
        await cl.Message(
            content=notes_added_text(role, notes),
            author=SYSTEM,
            elements=[
                cl.Text(name=NOTES, url=text_url(notes_text(notes)), display="side", mime="text/plain")
            ],
        ).send()
        await cl.ElementSidebar.set_title(f"{NOTES} · {len(notes)}")
