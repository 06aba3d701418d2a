"""The web chat's running displays: the token meter of the run, and the team's shared notes in the side panel."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import chainlit as cl

from ..conversation import Conversation
from ._format import NOTES, SYSTEM, meter_text, notes_added_text, notes_text

METER_EVERY_S = 0.5


class Meter:
    """One message per run with its tokens and cost so far, updated at most every METER_EVERY_S."""

    def __init__(self) -> None:
        self.message: cl.Message | None = None
        self.at = 0.0

    def reset(self) -> None:
        """The next update starts a new meter (a new run, or a page that took the run over)."""
        self.message = None

    async def update(self, prompt: int, completion: int, cost: float | None, conv: Conversation) -> None:
        now = time.monotonic()
        if self.message is not None and now - self.at < METER_EVERY_S:
            return
        self.at = now
        text = meter_text(prompt, completion, cost, conv)
        if self.message is None:
            self.message = cl.Message(content=text, author=SYSTEM)
            await self.message.send()
        else:
            self.message.content = text
            await self.message.update()

    async def finish(self, prompt: int, completion: int, cost: float | None, conv: Conversation) -> None:
        """The run's final totals, whenever the last update was."""
        if self.message is not None:
            self.message.content = meter_text(prompt, completion, cost, conv)
            await self.message.update()


class NotesPanel:
    """The team's shared notes (team_notes) in the side panel, shown again whenever one is added."""

    def __init__(self) -> None:
        self.shown = 0

    async def show(self, role: str, notes: Sequence[dict[str, Any]]) -> None:
        """A note in the chat (its link reopens the panel) and the board in the panel, once per note added."""
        if len(notes) == self.shown:
            return
        self.shown = len(notes)
        board = notes_text(notes)
        await cl.Message(
            content=notes_added_text(role, notes),
            author=SYSTEM,
            elements=[cl.Text(name=NOTES, content=board, display="side")],
        ).send()
        await cl.ElementSidebar.set_elements(
            [cl.Text(name="team-notes", content=board)], key=f"notes-{len(notes)}"
        )
        await cl.ElementSidebar.set_title(f"{NOTES} · {len(notes)}")  # after the elements, or it is lost
