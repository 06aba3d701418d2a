"""The engine behind a conversation: what a run needs from whatever drives the team.

`parley.engine.autogen` is the one package that knows AutoGen: it builds a team from a spec, streams its turns
with the human inbox and a cancel, and saves and loads its state. Nothing else in parley imports autogen.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from ..events import StopReason

__all__ = ["Cancel", "Ending", "MessageKind", "Outcome", "SegmentEnd", "Triggers"]

Cancel = StopReason | Literal["interrupt"]
"""Why a run's work in progress is cancelled: it ends for a stop reason, or a human interrupted the turn."""
MessageKind = Literal["text", "tool_summary", "handoff"]
"""What a role's finished message is: an answer, the results of its tool calls, or a hand-off."""
Ending = StopReason | Literal["interjection", "trigger"]
"""Why the team's termination condition ended a segment: the run ends, a human message waits, or a role woke."""


class SegmentEnd(Enum):
    """Why one stretch of the team's work ended. A run is one or more segments: each human message and each
    woken role starts another. Apart from `StopReason`, which says why a whole run ended."""

    STOPPED = "stopped"
    """The team stopped for good, or the run was ended: the reason is a `StopReason`."""
    HUMAN = "human"
    """A human message is waiting to join at this turn boundary."""
    INTERRUPTED = "interrupted"
    """The human interrupted the turn in progress; their message goes next."""
    TRIGGER = "trigger"
    """Event-driven roles were woken; they answer before the team goes on."""


@dataclass(frozen=True)
class Outcome:
    end: SegmentEnd
    reason: StopReason = "completed"
    """For STOPPED: why the run ends."""


class Triggers:
    """What wakes event-driven roles (`ROLE finished`, `stage finished`, `tool failed`, `validation failed`,
    `file written`), and the roles woken so far, to run after the current turn."""

    def __init__(self, roles_on: dict[str, list[str]]) -> None:
        self.roles_on = roles_on
        """Trigger to the roles it wakes."""
        self.pending: list[tuple[str, str]] = []
        """(role, trigger) waiting to run, each role once."""

    def fire(self, trigger: str) -> None:
        for role in self.roles_on.get(trigger, ()):
            if all(r != role for r, _ in self.pending):
                self.pending.append((role, trigger))

    def take(self) -> list[tuple[str, str]]:
        taken, self.pending = self.pending, []
        return taken
