"""What a run's events add up to, derived in one place for every adapter.

The CLI, the live web chat, a reopened (stored) thread and the evaluations all need the same facts from the
event stream: which approvals, questions and escalations still wait for a human, which sub-tasks are running
and who works on them, the tokens each speaker used, the running totals, the files written and the notes added.
`Projection` folds events into those facts, one at a time and without side effects: it reads nothing but the
events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .events import (
    AnswerEvent,
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    FileEvent,
    MessageEvent,
    NoteEvent,
    QuestionEvent,
    RunResult,
    SubtaskEvent,
    UsageEvent,
)

__all__ = ["Projection", "SpeakerUsage", "Waiting", "waiting_key"]

Waiting = ApprovalRequestEvent | QuestionEvent | EscalationEvent
"""What waits for a human decision."""


@dataclass
class SpeakerUsage:
    """One speaker's tokens (model calls it made, the selector included) and finished messages (turns)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    turns: int = 0


@dataclass
class Projection:
    """The state a stream of events describes. `apply` each event in order (or use `of`); read the fields."""

    waiting: dict[str, Waiting] = field(default_factory=dict[str, Waiting])
    """Approvals, questions and escalations not settled yet, by request, question or escalation id, oldest first."""
    subtasks: dict[str, SubtaskEvent] = field(default_factory=dict[str, SubtaskEvent])
    """Sub-tasks started and not finished (hierarchical pattern), by sub-task id, oldest first."""
    working: dict[str, SubtaskEvent] = field(default_factory=dict[str, SubtaskEvent])
    """The sub-task each worker is on."""
    usage: dict[str, SpeakerUsage] = field(default_factory=dict[str, SpeakerUsage])
    """Tokens and turns per speaker, in the order speakers first appeared."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    """The running totals (the last usage event's, then the result's)."""
    files: list[FileEvent] = field(default_factory=list[FileEvent])
    notes: list[NoteEvent] = field(default_factory=list[NoteEvent])
    """Notes the roles added to the team's shared notes, oldest first."""
    result: RunResult | None = None

    @classmethod
    def of(cls, events: Iterable[Event]) -> Projection:
        projection = cls()
        for ev in events:
            projection.apply(ev)
        return projection

    @property
    def approvals(self) -> list[ApprovalRequestEvent]:
        return [ev for ev in self.waiting.values() if isinstance(ev, ApprovalRequestEvent)]

    @property
    def questions(self) -> list[QuestionEvent]:
        return [ev for ev in self.waiting.values() if isinstance(ev, QuestionEvent)]

    @property
    def escalations(self) -> list[EscalationEvent]:
        return [ev for ev in self.waiting.values() if isinstance(ev, EscalationEvent)]

    def per_speaker(self) -> list[tuple[str, int, int, int]]:
        """(speaker, prompt tokens, completion tokens, turns), in the order speakers first appeared."""
        return [(name, u.prompt_tokens, u.completion_tokens, u.turns) for name, u in self.usage.items()]

    def apply(self, ev: Event) -> list[Event]:
        """Fold `ev` in. Returns what it settled: the request a decision answers, the question an answer
        answers, the escalation a resolution ends, the sub-task a worker finished; for the run's result,
        everything still open, which it cuts short. Empty for anything else."""
        match ev:
            case ApprovalRequestEvent() | QuestionEvent() | EscalationEvent():
                self.waiting[waiting_key(ev) or ""] = ev
            case ApprovalDecisionEvent():
                return self._settle(ev.request_id)
            case AnswerEvent():
                return self._settle(ev.question_id)
            case EscalationResolvedEvent():
                return self._settle(ev.escalation_id)
            case SubtaskEvent():
                return self._subtask(ev)
            case UsageEvent():
                self._usage(ev)
            case MessageEvent():
                self.usage.setdefault(ev.source, SpeakerUsage()).turns += 1
            case FileEvent():
                self.files.append(ev)
            case NoteEvent():
                self.notes.append(ev)
            case RunResult():
                return self._result(ev)
            case _:
                pass
        return []

    def _settle(self, key: str) -> list[Event]:
        settled = self.waiting.pop(key, None)
        return [settled] if settled is not None else []

    def _subtask(self, ev: SubtaskEvent) -> list[Event]:
        if ev.status == "started":
            self.subtasks[ev.subtask_id] = self.working[ev.worker] = ev
            return []
        started = self.subtasks.pop(ev.subtask_id, None)
        if started is None:
            return []
        if self.working.get(started.worker) is started:
            del self.working[started.worker]
        return [started]

    def _usage(self, ev: UsageEvent) -> None:
        row = self.usage.setdefault(ev.source, SpeakerUsage())
        row.prompt_tokens += ev.prompt_tokens
        row.completion_tokens += ev.completion_tokens
        self.prompt_tokens, self.completion_tokens = ev.total_prompt_tokens, ev.total_completion_tokens
        self.cost_usd = ev.cost_usd

    def _result(self, ev: RunResult) -> list[Event]:
        self.result = ev
        self.prompt_tokens, self.completion_tokens, self.cost_usd = (
            ev.prompt_tokens,
            ev.completion_tokens,
            ev.cost_usd,
        )
        cut: list[Event] = [*self.waiting.values(), *self.subtasks.values()]
        self.waiting.clear()
        self.subtasks.clear()
        self.working.clear()
        return cut


def waiting_key(ev: Event) -> str | None:
    """The id under which `ev` waits for a human (request, question or escalation id), or None."""
    if isinstance(ev, ApprovalRequestEvent):
        return ev.request_id
    if isinstance(ev, QuestionEvent):
        return ev.question_id
    return ev.escalation_id if isinstance(ev, EscalationEvent) else None
