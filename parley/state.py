"""A conversation's state, as rebuilt from its stored events and its last checkpoint.

`ConversationState` is what `restore(events, checkpoint)` returns: a pure function of what the store holds, which
`Conversation.resume` applies to a freshly built conversation. Nothing here knows the engine: the team itself is
rebuilt from `said` (everything the team was told, in order) plus the engine's small `checkpoint`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .events import (
    Event,
    HumanMessageEvent,
    HumanQueuedEvent,
    MessageEvent,
    RunResult,
    RunStartedEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnAbandonedEvent,
    UsageEvent,
)
from .models import SELECTOR

__all__ = ["ConversationState", "Said", "restore"]


@dataclass(frozen=True, slots=True)
class Said:
    """One message the team was given or produced: a role's turn, or a human's message."""

    source: str
    content: str
    kind: Literal["text", "tool_summary", "handoff"] = "text"
    target: str | None = None
    """Whom a handoff hands the conversation to."""


@dataclass
class ConversationState:
    """Everything a resumed conversation starts from."""

    history: list[Event] = field(default_factory=list[Event])
    """Every stored event the version understands, in order."""
    turn: int = 0
    """The last finished turn."""
    checkpoint: Mapping[str, Any] | None = None
    """The engine's checkpoint at the last finished turn (or an earlier one), opaque here."""
    said: list[Said] = field(default_factory=list[Said])
    """What the team was told, in order, less the turns a dead process never finished: the rebuilt team's memory."""
    pending: list[str] = field(default_factory=list[str])
    """Human messages the team has not received: delivered first by the next run."""
    notes: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    """The team_notes board, rebuilt from the calls that succeeded."""
    call_ids: set[str] = field(default_factory=set[str])
    """Tool call ids already stored: a model that repeats one after a restart gets a fresh id."""
    script_replies: dict[str, dict[str, int]] = field(default_factory=dict[str, dict[str, int]])
    """Per scripted model (`scripted:<path>`), how many replies each speaker has taken from its script."""


def restore(
    events: Sequence[Event],
    checkpoint: Mapping[str, Any] | None,
    *,
    role_models: Mapping[str, str] | None = None,
) -> ConversationState:
    """The state of a stored conversation: its `events` (decoded, oldest first) and the latest `checkpoint` whose
    turn is at most the last finished turn. `role_models` names each role's model (for scripted conversations:
    a reply cut short by a stop was taken from the script too). Pure: reads its arguments only."""
    history = list(events)
    lost = _lost_turns(history)
    kept = [e for i, e in enumerate(history) if i not in lost]
    turn = max((e.turn for e in history if isinstance(e, MessageEvent)), default=0)
    return ConversationState(
        history=history,
        turn=turn,
        checkpoint=checkpoint,
        said=_said(kept, checkpoint),
        pending=_undelivered(history),
        notes=_notes(kept),
        call_ids={e.call_id for e in kept if isinstance(e, ToolCallEvent)},
        script_replies=_script_replies(kept, role_models or {}),
    )


def _said(events: Sequence[Event], checkpoint: Mapping[str, Any] | None) -> list[Said]:
    out: list[Said] = []
    for e in events:
        if isinstance(e, MessageEvent):
            out.append(Said(e.source, e.content, e.kind))
        elif isinstance(e, HumanMessageEvent):
            out.append(Said("user", e.content))
    # A handoff's target is in the checkpoint taken after it (a swarm's next speaker).
    mark = checkpoint or {}
    handoff = mark.get("handoff")
    if (
        isinstance(handoff, str)
        and out
        and out[-1].kind == "handoff"
        and out[-1].source == mark.get("speaker")
    ):
        out[-1] = Said(out[-1].source, out[-1].content, "handoff", handoff)
    return out


def _runs(events: Sequence[Event]) -> list[tuple[int, int]]:
    """Where each run's events start and end in the history."""
    starts = [i for i, e in enumerate(events) if isinstance(e, RunStartedEvent)]
    return list(
        zip(starts, [*starts[1:], len(events)][: len(starts)], strict=True)
    )  # none in an empty thread


def _lost_turns(events: Sequence[Event]) -> set[int]:
    """The events of turns a dead process never finished: a run without a stored result ends with the turn
    it died in, after its last message. The restored team does that turn again, so its model calls and
    notes do not count twice."""
    lost: set[int] = set()
    for start, end in _runs(events):
        if any(isinstance(e, RunResult) for e in events[start:end]):
            continue
        last = max((i for i in range(start, end) if isinstance(events[i], MessageEvent)), default=start)
        lost.update(range(last + 1, end))
    return lost


def _undelivered(events: Sequence[Event]) -> list[str]:
    """Human messages the team has not received: those the last run ended with or, when its process died,
    those it carried over, its task and those queued, less the ones it delivered before dying."""
    waiting: list[str] = []
    for start, end in _runs(events):
        run = events[start:end]
        result = next((e for e in run if isinstance(e, RunResult)), None)
        if result is not None:
            waiting = list(result.undelivered)
            continue
        delivered = [e for e in run if isinstance(e, HumanMessageEvent)]
        task = [] if any(e.mode == "task" for e in delivered) else [run[0].content]
        waiting = [*waiting, *task, *(e.content for e in run if isinstance(e, HumanQueuedEvent))]
        for e in delivered:
            if e.mode != "task" and e.content in waiting:
                waiting.remove(e.content)
    return waiting


def _notes(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The team's shared notes: from the note events, or for threads stored before those existed, from the
    team_notes calls that succeeded."""
    noted = [e for e in events if e.type == "note"]
    if noted:
        return [{"role": e.source, "text": e.content, "ts": e.ts} for e in noted]
    calls = {e.call_id: e for e in events if isinstance(e, ToolCallEvent) and e.name == "team_notes"}
    notes: list[dict[str, Any]] = []
    for e in events:
        call = calls.get(e.call_id) if isinstance(e, ToolResultEvent) and not e.is_error else None
        if call is None or not isinstance(call.arguments, dict):
            continue
        text = str(call.arguments.get("text", "")).strip()
        if call.arguments.get("action") == "add" and text:
            notes.append({"role": call.source, "text": text[:2000], "ts": call.ts})
    return notes


def _script_replies(events: Sequence[Event], role_models: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """A scripted conversation continues where its stored model calls left off, not from the top."""
    counts: dict[str, dict[str, int]] = {}
    metered_cut: set[tuple[str, str]] = set()
    for e in events:
        if isinstance(e, UsageEvent) and e.model.startswith("scripted:"):
            if e.reflection:  # a reflection on tool use takes no script reply (the replay answers it)
                continue
            model, who = e.model, SELECTOR if e.source == "selector" else e.source
            if e.cancelled:
                metered_cut.add((model, e.source))
        elif isinstance(e, TurnAbandonedEvent) and role_models.get(e.source, "").startswith("scripted:"):
            model, who = role_models[e.source], e.source
            if (model, who) in metered_cut:  # its cut-short call is on the meter already
                metered_cut.discard((model, who))
                continue
        else:
            continue
        per_model = counts.setdefault(model, {})
        per_model[who] = per_model.get(who, 0) + 1
    return counts
