"""The run's outbox to the store: events, audit rows and checkpoints written in one transaction per batch."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .events import (
    AnswerEvent,
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    ChunkEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    HumanMessageEvent,
    QuestionEvent,
    ValidationEvent,
    VoteEvent,
)

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Checkpoint", "audit_record", "persist"]


@dataclass(frozen=True)
class Checkpoint:
    turn: int
    state: dict[str, Any]
    pending: list[str]


def jsonable(state: Mapping[str, Any]) -> dict[str, Any]:
    """AutoGen's state holds datetimes; the store keeps JSON."""
    return json.loads(json.dumps(state, default=lambda o: o.isoformat() if hasattr(o, "isoformat") else str(o)))


async def persist(store: Store, tid: str, items: Sequence[Event | Checkpoint], run_number: int) -> None:
    """What piled up in the outbox, in one transaction. Only the newest checkpoint is worth keeping: a restore
    replays whatever was said after the checkpoint it finds."""
    new_events: list[tuple[str, dict[str, Any]]] = []
    audits: list[tuple[str, str, dict[str, Any]]] = []
    checkpoint = None
    for item in items:
        if isinstance(item, Checkpoint):
            checkpoint = item
            continue
        if isinstance(item, ChunkEvent):
            continue  # the finished message is stored; its chunks are only for live display
        new_events.append((item.type, item.model_dump(mode="json")))
        record = audit_record(item)
        if record is not None:
            actor, action, detail = record
            audits.append((actor, action, {"run": run_number, "turn": item.turn, **detail}))
    saved = None if checkpoint is None else (checkpoint.turn, jsonable(checkpoint.state), checkpoint.pending)
    await store.append_batch(tid, new_events, audits, saved)


def audit_record(ev: Event) -> tuple[str, str, dict[str, Any]] | None:
    """The audit trail's view of an event: (who, what, detail with the decision), or None if not audited."""
    if isinstance(ev, HumanMessageEvent):
        return ev.source, {"task": "task", "say": "interjection", "interrupt": "interrupt"}[ev.mode], \
            {"decision": "delivered", "text": ev.content}
    if isinstance(ev, ApprovalRequestEvent):
        return ev.source, "approval requested", {"decision": "waiting", "tool": ev.name, "arguments": ev.arguments,
                                                 "request_id": ev.request_id}
    if isinstance(ev, ApprovalDecisionEvent):
        return ev.actor, "approve" if ev.approved else "deny", {
            "decision": "approved" if ev.approved else "denied", "tool": ev.name, "request_id": ev.request_id,
            "reason": ev.reason}
    if isinstance(ev, ValidationEvent):
        return ev.source, "validation", {"decision": "passed" if ev.passed else "failed", "attempt": ev.attempt,
                                         "problems": ev.problems, "text": ev.content}
    if isinstance(ev, QuestionEvent):
        return ev.source, "question", {"decision": "waiting", "question_id": ev.question_id, "text": ev.content}
    if isinstance(ev, AnswerEvent):
        return ev.actor, "answer", {"decision": "timed out" if ev.timed_out else "answered",
                                    "question_id": ev.question_id, "text": ev.content}
    if isinstance(ev, EscalationEvent):
        return ev.source, "escalation", {"decision": "waiting", "kind": ev.kind, "escalation_id": ev.escalation_id,
                                         "text": ev.content, "positions": [p.model_dump() for p in ev.positions]}
    if isinstance(ev, EscalationResolvedEvent):
        return ev.actor, "escalation resolved", {"decision": ev.decision, "choice": ev.choice,
                                                 "escalation_id": ev.escalation_id, "text": ev.content}
    if isinstance(ev, VoteEvent):
        return ev.source, "vote", {"decision": ev.decision or ev.outcome, "round": ev.round, "votes": ev.votes,
                                   "tally": ev.tally}
    return None
