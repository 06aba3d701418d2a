"""The events of a run: one discriminated union, tagged by `type`, ending with a `result`.

Every adapter (CLI, web chat, evaluations, benchmarks) matches on these and nothing else.
Every event has `type`, `source`, `content` and `turn` (the conversation-wide number of the
agent turn it belongs to).
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "AnswerEvent",
    "ApprovalDecisionEvent",
    "ApprovalRequestEvent",
    "ChunkEvent",
    "ErrorEvent",
    "EscalationEvent",
    "EscalationResolvedEvent",
    "Event",
    "FileEvent",
    "HumanMessageEvent",
    "HumanQueuedEvent",
    "MessageEvent",
    "NoteEvent",
    "NoticeEvent",
    "Position",
    "QuestionEvent",
    "RunResult",
    "RunStartedEvent",
    "SpeakerSelectedEvent",
    "StopReason",
    "SubtaskEvent",
    "ToolCallEvent",
    "ToolProgressEvent",
    "ToolResultEvent",
    "TriggerEvent",
    "TurnAbandonedEvent",
    "UsageEvent",
    "ValidationEvent",
    "VoteEvent",
    "decode_events",
    "event_adapter",
]

StopReason = Literal[
    "stop_text",
    "completed",
    "handoff",
    "max_turns",
    "escalation",
    "loop",
    "max_tokens",
    "timeout",
    "stopped",
    "error",
]
NORMAL_STOPS: frozenset[str] = frozenset({"stop_text", "completed", "handoff", "max_turns"})
"""Stops that mean the team did its work. `escalation`: the run ended with an escalation nobody resolved;
`loop`: a role kept saying the same thing."""


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str = ""
    """Who produced it: a role name, `user`, `selector` or `parley`."""
    content: str = ""
    turn: int = 0
    ts: float = Field(default_factory=time.time)
    """Unix time the event was created."""


class RunStartedEvent(_Event):
    type: Literal["run_started"] = "run_started"
    team: str
    model: str
    pattern: str
    roles: list[str]


class HumanQueuedEvent(_Event):
    """A human message was accepted; it joins the conversation after the current turn."""

    type: Literal["human_queued"] = "human_queued"
    mode: Literal["say", "interrupt"] = "say"
    author: str = ""
    """Who typed it (a user name); empty where nobody is named (the command line, a script)."""


class HumanMessageEvent(_Event):
    """A human message reached the team (the task, an interjection or an interrupt)."""

    type: Literal["human_message"] = "human_message"
    mode: Literal["task", "say", "interrupt"] = "task"
    author: str = ""
    """Who typed it (a user name); empty where nobody is named (the command line, a script)."""


class SpeakerSelectedEvent(_Event):
    type: Literal["speaker_selected"] = "speaker_selected"
    fallback: bool = False
    """True when the selector's answer named no role and parley picked by rule."""


class ChunkEvent(_Event):
    """Streamed text of a message still being written."""

    type: Literal["chunk"] = "chunk"


class MessageEvent(_Event):
    """A finished agent message: one turn."""

    type: Literal["message"] = "message"
    kind: Literal["text", "tool_summary", "handoff"] = "text"


class ToolCallEvent(_Event):
    type: Literal["tool_call"] = "tool_call"
    name: str
    arguments: dict[str, Any] | str
    call_id: str


class ToolResultEvent(_Event):
    type: Literal["tool_result"] = "tool_result"
    name: str
    call_id: str
    is_error: bool = False


class ToolProgressEvent(_Event):
    """What a running tool reports before its result: MCP progress (`progress` of `total`) or a log line
    (`level` set, `content` the line)."""

    type: Literal["tool_progress"] = "tool_progress"
    name: str
    """The tool, as humans know it (`SERVER.TOOL` for an MCP tool)."""
    call_id: str = ""
    progress: float | None = None
    total: float | None = None
    level: str | None = None
    """For a log line: the server's level (debug, info, warning, error...)."""


class ApprovalRequestEvent(_Event):
    """A role wants to call a tool that needs a human's approval; the run waits for a decision."""

    type: Literal["approval_request"] = "approval_request"
    name: str
    """The tool."""
    arguments: dict[str, Any]
    request_id: str


class ApprovalDecisionEvent(_Event):
    """The answer to an approval request; a denial reaches the agent as a tool error."""

    type: Literal["approval_decision"] = "approval_decision"
    name: str
    request_id: str
    approved: bool
    reason: str = ""
    actor: str = "user"
    """Who decided: a user name, or `policy` for a standing --approve/--deny."""


class FileEvent(_Event):
    """A file a tool wrote in the conversation's workspace (a chart, a deck, a CSV)."""

    type: Literal["file"] = "file"
    name: str
    """Path relative to the workspace."""
    path: str
    """Absolute path on the server."""
    mime: str
    size: int
    tool: str

    @classmethod
    def written(cls, role: str, tool: str, path: Path, workspace: Path, turn: int) -> FileEvent:
        """The event of `path`, which `role`'s `tool` wrote in `workspace` during `turn`."""
        name = str(path.relative_to(workspace))
        return cls(
            source=role,
            content=f"{role} wrote {name}",
            name=name,
            path=str(path),
            mime=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            size=path.stat().st_size,
            tool=tool,
            turn=turn,
        )


class UsageEvent(_Event):
    """One model call's tokens, and the running totals."""

    type: Literal["usage"] = "usage"
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_prompt_tokens: int
    total_completion_tokens: int
    cost_usd: float | None
    """Running total cost, None when a price is unknown."""
    estimated: bool = False
    """Counted with tiktoken: the backend reported no usage."""
    cancelled: bool = False
    """The call was cut short (interrupt, stop, time-out); its tokens are an estimate."""
    reflection: bool = False
    """The call answered tool results (AutoGen's reflection on tool use) rather than starting a turn."""
    latency_s: float | None = None
    """How long the call took, in seconds (it started at `ts - latency_s`); None in events stored before."""
    finish_reason: str | None = None
    """Why the model stopped (`stop`, `length`, `function_calls`, `content_filter`, `unknown`); None when cut short
    or not known."""


class TurnAbandonedEvent(_Event):
    """A turn cut short by interrupt, stop or timeout; `content` is what had streamed."""

    type: Literal["turn_abandoned"] = "turn_abandoned"
    reason: str


class ValidationEvent(_Event):
    """A role's answer checked against the role's validation rules; a failure asks the role to correct it."""

    type: Literal["validation"] = "validation"
    passed: bool
    attempt: int
    """1 for the first answer, 2 for the first correction..."""
    retries: int
    """Corrections allowed before escalating."""
    problems: list[str] = Field(default_factory=list)
    """What failed, one line per rule, as sent back to the role."""


class QuestionEvent(_Event):
    """A role asks the human a question (the ask_human tool); the run waits for an answer."""

    type: Literal["question"] = "question"
    question_id: str
    timeout_s: float | None
    default: str
    """What the role is told if nobody answers in time."""


class AnswerEvent(_Event):
    """The answer to a question: a person's, the scripted human's, or the default on time-out."""

    type: Literal["answer"] = "answer"
    question_id: str
    timed_out: bool = False
    actor: str = "user"


class Position(BaseModel):
    """One side of a disagreement: who holds it and what it says."""

    model_config = ConfigDict(frozen=True)
    who: str
    text: str


class EscalationEvent(_Event):
    """The team cannot settle something alone; the run waits for a human decision.

    The human picks one of `positions`, writes their own answer, or tells the team to continue.
    """

    type: Literal["escalation"] = "escalation"
    escalation_id: str
    kind: Literal["validation", "tie", "disagreement"]
    positions: list[Position]


class EscalationResolvedEvent(_Event):
    """A human's decision on an escalation; `content` is the answer the team goes on with."""

    type: Literal["escalation_resolved"] = "escalation_resolved"
    escalation_id: str
    decision: Literal["choose", "write", "continue", "unresolved"]
    """`unresolved`: the run ended (stopped, timed out) before anyone decided."""
    choice: int | None = None
    """1-based index into the escalation's positions, for `choose`."""
    actor: str = "user"


class SubtaskEvent(_Event):
    """Hierarchical pattern: a manager delegated a sub-task to a worker, and its progress."""

    type: Literal["subtask"] = "subtask"
    subtask_id: str
    worker: str
    task: str
    status: Literal["started", "done", "failed"]
    """`content` is the task when started, the worker's answer when done."""


class VoteEvent(_Event):
    """Consensus pattern: one round's tally of the voters' normalised answers."""

    type: Literal["vote"] = "vote"
    round: int
    votes: dict[str, str]
    """Role to normalised answer."""
    tally: dict[str, int]
    """Answer to votes, most first."""
    outcome: Literal["majority", "debate", "tie", "judge", "manager", "human"]
    """`majority` decided; `debate`: another round; `tie`: the tie rule decides; the rest: who settled the tie."""
    decision: str | None = None
    """The winning answer, once decided."""


class TriggerEvent(_Event):
    """Event-driven roles: what happened (`on`) and which role it woke."""

    type: Literal["trigger"] = "trigger"
    role: str
    on: str


class NoteEvent(_Event):
    """A role added a note to the team's shared notes (team_notes); `content` is the note's text, `source` the role."""

    type: Literal["note"] = "note"


class NoticeEvent(_Event):
    type: Literal["notice"] = "notice"
    level: Literal["info", "warning"] = "info"


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    error_type: str


class RunResult(_Event):
    """The last event of every run."""

    type: Literal["result"] = "result"
    stop_reason: StopReason
    turns: int
    """Agent turns in this run."""
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    detail: str = ""
    """One line on why the run stopped."""
    undelivered: list[str] = Field(default_factory=list)
    """Human messages typed too late for this run; the conversation delivers them next time."""

    @property
    def ok(self) -> bool:
        return self.stop_reason in NORMAL_STOPS


Event = Annotated[
    RunStartedEvent
    | HumanQueuedEvent
    | HumanMessageEvent
    | SpeakerSelectedEvent
    | ChunkEvent
    | MessageEvent
    | ToolCallEvent
    | ToolResultEvent
    | ToolProgressEvent
    | ApprovalRequestEvent
    | ApprovalDecisionEvent
    | FileEvent
    | UsageEvent
    | TurnAbandonedEvent
    | ValidationEvent
    | QuestionEvent
    | AnswerEvent
    | EscalationEvent
    | EscalationResolvedEvent
    | SubtaskEvent
    | VoteEvent
    | TriggerEvent
    | NoteEvent
    | NoticeEvent
    | ErrorEvent
    | RunResult,
    Field(discriminator="type"),
]
event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def decode_events(payloads: Iterable[Mapping[str, Any]]) -> list[Event]:
    """Stored events (their JSON payloads, oldest first) as events: the one way a stored thread is read back.
    A payload this version cannot read (a kind of event from a newer version) is left out: what is understood
    still shows."""
    decoded: list[Event] = []
    for payload in payloads:
        try:
            decoded.append(event_adapter.validate_python(payload))
        except ValueError:
            continue
    return decoded
