"""A run's events as a tree of timed parts (turns, model calls, tool calls, human waits, selector picks).

Pure and free of OpenTelemetry: `RunParts.add` takes the run's events in order and returns the parts that are
complete, each with its children; parley.telemetry._otlp turns them into spans.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelStringError
from ..events import (
    AnswerEvent,
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    MessageEvent,
    QuestionEvent,
    RunResult,
    SpeakerSelectedEvent,
    SubtaskEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnAbandonedEvent,
    UsageEvent,
)
from ..models import parse_model

__all__ = ["Part", "RunParts", "model_attributes"]

Attributes = dict[str, Any]

PROVIDERS = {
    "azure": "azure.ai.openai",
    "compatible": "openai",
    "local": "parley.local",
    "scripted": "parley.scripted",
    "function": "parley.function",
}
"""`gen_ai.provider.name` per model backend, where it differs from the backend's own name."""


@dataclass
class Part:
    """One span to be: a name, a start and an end (Unix seconds), attributes and children."""

    name: str
    start: float
    end: float
    attributes: Attributes = field(default_factory=Attributes)
    children: list[Part] = field(default_factory=list["Part"])
    kind: str = "internal"
    """`internal` or `client` (a model call)."""
    error: str | None = None
    """The error's type, for a part that failed."""


def model_attributes(model: str) -> Attributes:
    """The GenAI attributes a model string gives: the provider and the requested model."""
    try:
        ref = parse_model(model)
    except ModelStringError:
        return {"gen_ai.provider.name": "parley", "gen_ai.system": "parley", "gen_ai.request.model": model}
    provider = PROVIDERS.get(ref.backend, ref.backend)
    attributes: Attributes = {
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": ref.name,
    }
    if ref.base_url:
        attributes["server.address"] = ref.base_url
    return attributes


def chat_part(ev: UsageEvent) -> Part:
    """A model call, after the GenAI conventions (`chat {model}`); its tokens are the meter's."""
    attributes = {
        "gen_ai.operation.name": "chat",
        **model_attributes(ev.model),
        "gen_ai.usage.input_tokens": ev.prompt_tokens,
        "gen_ai.usage.output_tokens": ev.completion_tokens,
        "parley.role": ev.source,
        "parley.model": ev.model,
        "parley.usage.estimated": ev.estimated,
        "parley.call.cancelled": ev.cancelled,
        "parley.call.reflection": ev.reflection,
    }
    if ev.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [ev.finish_reason]
    start = ev.ts - ev.latency_s if ev.latency_s is not None else ev.ts  # events stored before had no latency
    name = f"chat {attributes['gen_ai.request.model']}"
    return Part(name, start, ev.ts, attributes, kind="client")


@dataclass
class _Tool:
    call: Part
    approvals: list[Part] = field(default_factory=list[Part])


class RunParts:
    """Groups a run's events into parts: each role's model calls, tools and waits go under its turn, which ends
    with its message; the selector's calls go under its pick."""

    def __init__(self, started: float) -> None:
        self.last_end = started
        """When the last turn or pick ended: where a part with nothing earlier to go by starts."""
        self._pending: dict[str, list[Part]] = {}
        """Finished parts per role, waiting for the role's turn to end."""
        self._picked: dict[str, float] = {}
        """When each role was last picked to speak."""
        self._tools: dict[str, _Tool] = {}
        self._approvals: dict[str, Part] = {}
        self._approved: dict[tuple[str, str], deque[Part]] = {}
        """Approval waits not yet matched with their tool call, per (role, tool)."""
        self._questions: dict[str, tuple[Part, str]] = {}
        self._subtasks: dict[str, tuple[float, str]] = {}
        """Open sub-tasks (hierarchical pattern): when each started, and its worker."""
        self._worker_turns: dict[str, Part] = {}
        """A worker's finished turn, waiting for its sub-task's end to go inside the manager's turn."""
        self._escalations: dict[str, tuple[Part, str]] = {}

    def add(self, ev: Event) -> list[Part]:
        """Take the next event; returns the parts it completes at the top of the run (turns, picks)."""
        match ev:
            case UsageEvent():
                self._hold(ev.source, chat_part(ev))
            case SpeakerSelectedEvent():
                return [self._pick(ev)]
            case MessageEvent() | TurnAbandonedEvent():
                return self._turn_done(ev)
            case ToolCallEvent():
                self._call(ev)
            case ToolResultEvent():
                self._result(ev)
            case ApprovalRequestEvent() | ApprovalDecisionEvent():
                self._approval(ev)
            case QuestionEvent() | AnswerEvent():
                self._question(ev)
            case EscalationEvent() | EscalationResolvedEvent():
                return self._escalation(ev)
            case SubtaskEvent():
                self._subtask(ev)
            case RunResult():
                return self._leftovers(ev.ts)
            case _:
                pass
        return []

    # -- turns and picks ------------------------------------------------------------------

    def _hold(self, source: str, part: Part) -> None:
        self._pending.setdefault(source, []).append(part)

    def _take(self, source: str) -> list[Part]:
        return sorted(self._pending.pop(source, []), key=lambda p: p.start)

    def _pick(self, ev: SpeakerSelectedEvent) -> Part:
        speaker = ev.content.split(" ", 1)[0]
        calls = self._take(ev.source)
        # The manager may pick the next speaker before the last turn's message is shown: its own calls say when.
        start = min(c.start for c in calls) if calls else self.last_end
        self.last_end = ev.ts
        self._picked[speaker] = ev.ts
        attributes: Attributes = {"parley.speaker": speaker, "parley.selector.fallback": ev.fallback}
        attributes["parley.turn"] = ev.turn
        return Part("select_speaker", start, ev.ts, attributes, calls)

    def _turn_done(self, ev: MessageEvent | TurnAbandonedEvent) -> list[Part]:
        part = self._turn(ev)
        if any(worker == ev.source for _, worker in self._subtasks.values()):
            self._worker_turns[ev.source] = part  # a sub-task's answer: its span ends with the sub-task
            return []
        return [part]

    def _turn(self, ev: MessageEvent | TurnAbandonedEvent) -> Part:
        children = self._take(ev.source)
        starts = [c.start for c in children]
        picked = self._picked.pop(ev.source, None)
        if picked is not None:
            starts.append(picked)
        start = min(starts) if starts else min(self.last_end, ev.ts)
        self.last_end = max(self.last_end, ev.ts)
        attributes: Attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": ev.source,
            "parley.role": ev.source,
            "parley.turn": ev.turn,
        }
        if isinstance(ev, TurnAbandonedEvent):
            attributes["parley.turn.abandoned"] = ev.reason
        else:
            attributes["parley.message.kind"] = ev.kind
        return Part(f"invoke_agent {ev.source}", start, ev.ts, attributes, children)

    def _leftovers(self, end: float) -> list[Part]:
        """The run ended: what never reached a turn's end (calls cut short, a worker's calls) goes under the run."""
        for tool in list(self._tools):
            self._close_tool(tool, end, "cancelled")
        for approval in self._approvals.values():
            approval.end = end
            approval.attributes["parley.approval.decision"] = "none"
        parts = [part for part, _ in self._escalations.values()]
        for part in parts:
            part.end = end
            part.attributes["parley.escalation.decision"] = "none"
        for part, source in self._questions.values():
            part.end = end
            self._hold(source, part)
        self._questions.clear()
        parts += [part for source in list(self._pending) for part in self._take(source)]
        return sorted(parts, key=lambda p: p.start)

    # -- tools and the human waits inside them ----------------------------------------------------

    def _call(self, ev: ToolCallEvent) -> None:
        waits = self._approved.get((ev.source, ev.name))
        approvals = [waits.popleft()] if waits else []
        start = min([ev.ts, *(a.start for a in approvals)])
        attributes: Attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": ev.name,
            "gen_ai.tool.call.id": ev.call_id,
            "gen_ai.tool.type": "function",
            "parley.role": ev.source,
        }
        self._tools[ev.call_id] = _Tool(Part(f"execute_tool {ev.name}", start, ev.ts, attributes), approvals)
        self._hold(ev.source, self._tools[ev.call_id].call)

    def _result(self, ev: ToolResultEvent) -> None:
        if ev.call_id in self._tools:
            self._close_tool(ev.call_id, ev.ts, "tool_error" if ev.is_error else None)

    def _close_tool(self, call_id: str, end: float, error: str | None) -> None:
        tool = self._tools.pop(call_id)
        call = tool.call
        call.end, call.error = end, error
        call.children.extend(tool.approvals)
        if any(a.attributes.get("parley.approval.decision") == "denied" for a in tool.approvals):
            call.error = "denied"

    def _approval(self, ev: ApprovalRequestEvent | ApprovalDecisionEvent) -> None:
        if isinstance(ev, ApprovalRequestEvent):
            attributes: Attributes = {
                "gen_ai.tool.name": ev.name,
                "parley.approval.request_id": ev.request_id,
            }
            part = Part(f"await_approval {ev.name}", ev.ts, ev.ts, attributes)
            self._approvals[ev.request_id] = part
            # The tool's call event may come after the decision (the call is shown once it is decided).
            self._approved.setdefault((ev.source, ev.name), deque()).append(part)
            return
        part = self._approvals.pop(ev.request_id, None)
        if part is not None:
            part.end = ev.ts
            part.attributes["parley.approval.decision"] = "approved" if ev.approved else "denied"
            part.attributes["parley.approval.actor"] = ev.actor

    def _question(self, ev: QuestionEvent | AnswerEvent) -> None:
        if isinstance(ev, QuestionEvent):
            part = Part("await_answer", ev.ts, ev.ts, {"parley.question.id": ev.question_id})
            self._questions[ev.question_id] = (part, ev.source)
            return
        held = self._questions.pop(ev.question_id, None)
        if held is not None:
            part, source = held
            part.end = ev.ts
            part.attributes["parley.answer.timed_out"] = ev.timed_out
            part.attributes["parley.answer.actor"] = ev.actor
            self._hold(source, part)

    def _escalation(self, ev: EscalationEvent | EscalationResolvedEvent) -> list[Part]:
        """The team waits for a human to settle something: in the turn of the role that escalated (a failed
        validation), or under the run when parley did (a loop without agreement)."""
        if isinstance(ev, EscalationEvent):
            attributes: Attributes = {
                "parley.escalation.id": ev.escalation_id,
                "parley.escalation.kind": ev.kind,
            }
            self._escalations[ev.escalation_id] = (
                Part("await_escalation", ev.ts, ev.ts, attributes),
                ev.source,
            )
            return []
        held = self._escalations.pop(ev.escalation_id, None)
        if held is None:
            return []
        part, source = held
        part.end = ev.ts
        part.attributes["parley.escalation.decision"] = ev.decision
        part.attributes["parley.escalation.actor"] = ev.actor
        if source == "parley":
            return [part]
        self._hold(source, part)
        return []

    def _subtask(self, ev: SubtaskEvent) -> None:
        """Hierarchical pattern: a worker's sub-task is its turn, inside its manager's turn."""
        if ev.status == "started":
            self._subtasks[ev.subtask_id] = (ev.ts, ev.worker)
            return
        start, _ = self._subtasks.pop(ev.subtask_id, (ev.ts, ev.worker))
        attributes: Attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": ev.worker,
            "parley.role": ev.worker,
            "parley.subtask.id": ev.subtask_id,
        }
        part = self._worker_turns.pop(ev.worker, None) or Part(f"invoke_agent {ev.worker}", start, ev.ts)
        part.children = sorted([*part.children, *self._take(ev.worker)], key=lambda p: p.start)
        part.start = min([start, part.start, *(c.start for c in part.children)])
        part.end = max(part.end, ev.ts)
        part.attributes.update(attributes)
        part.error = "subtask_failed" if ev.status == "failed" else None
        self._hold(ev.source, part)
