"""The human inbox: everything a human says waits here until the team takes it in.

One place for every way a human message arrives: queued during a run (`say`, `interrupt`), carried over from a
run that ended before delivering it, the task of a new run, or timed to join after a given turn (a scripted
human's interjection in an evaluation).
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

__all__ = ["HumanInbox", "HumanMessage", "Mode", "current_inbox", "use_inbox"]

Mode = Literal["task", "say", "interrupt"]


@dataclass(frozen=True)
class HumanMessage:
    mode: Mode
    text: str
    author: str = ""
    """Who typed it (a user name); empty where nobody is named (the command line, a script)."""


class HumanInbox:
    """Human messages waiting for the team, in the order they are to be delivered."""

    def __init__(self) -> None:
        self._waiting: list[HumanMessage] = []
        self._timed: dict[int, list[HumanMessage]] = {}
        """Messages to deliver once this many turns of the run are done."""
        self._listeners: list[asyncio.Future[None]] = []

    def put(self, mode: Mode, text: str, author: str = "") -> None:
        """A message to deliver at the next turn boundary."""
        self._waiting.append(HumanMessage(mode, text, author))
        listeners, self._listeners = self._listeners, []
        for fut in listeners:
            if not fut.done():
                fut.set_result(None)

    async def next_message(self) -> None:
        """Return once a human puts a message here after this call (a scripted reply that holds until the human
        speaks: parley.models.HeldReply)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._listeners.append(fut)
        await fut

    def put_first(self, messages: list[HumanMessage]) -> None:
        """Messages that go before everything waiting (carried over from an earlier run, then a new task)."""
        self._waiting[:0] = messages

    def after(self, turn: int, mode: Mode, text: str) -> None:
        """A message to deliver once `turn` turns of the run are done (turn 0: with the task)."""
        if turn <= 0:
            self.put(mode, text)
        else:
            self._timed.setdefault(turn, []).append(HumanMessage(mode, text))

    def ready(self, turns_done: int) -> bool:
        """Whether a message is to be delivered now that `turns_done` turns are done (timed ones become due)."""
        for turn in sorted(t for t in self._timed if t <= turns_done):
            self._waiting += self._timed.pop(turn)
        return bool(self._waiting)

    @property
    def waiting(self) -> list[HumanMessage]:
        return list(self._waiting)

    def take(self) -> list[HumanMessage]:
        """Every message due now, in order; the inbox keeps the timed ones not yet due."""
        taken, self._waiting = self._waiting, []
        return taken

    def carry_over(self) -> list[HumanMessage]:
        """At the end of a run: what was never delivered, kept for the next run (timed ones are dropped)."""
        self._timed = {}
        return list(self._waiting)


_CURRENT: ContextVar[HumanInbox | None] = ContextVar("parley_inbox", default=None)


def current_inbox() -> HumanInbox | None:
    """The inbox of the run in progress in this task (and the tasks it started); None outside a run."""
    return _CURRENT.get()


def use_inbox(inbox: HumanInbox) -> None:
    """Make `inbox` the current one for this task and the tasks it starts from now on (a run's own task)."""
    _CURRENT.set(inbox)
