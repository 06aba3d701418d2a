"""The run's outbox to the store: events, audit rows and checkpoints written in one transaction per batch."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._decisions import was_cancelled
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
    from .store import Lease, Store

__all__ = ["Checkpoint", "audit_record", "persist"]


@dataclass(frozen=True)
class Checkpoint:
    turn: int
    state: dict[str, Any]
    pending: list[str]


def jsonable(state: Mapping[str, Any]) -> dict[str, Any]:
    """AutoGen's state holds datetimes; the store keeps JSON."""
    return json.loads(
        json.dumps(state, default=lambda o: o.isoformat() if hasattr(o, "isoformat") else str(o))
    )


async def persist(
    store: Store,
    tid: str,
    items: Sequence[Event | Checkpoint],
    run_number: int,
    fence: Lease | None = None,
) -> list[int]:
    """What piled up in the outbox, in one transaction; returns the seqs of the events stored, in order (streamed
    pieces are not stored). Only the newest checkpoint is worth keeping: a restore replays whatever was said after
    the checkpoint it finds. With `fence`, LeaseLost (and nothing stored) once that lease lost the thread."""
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
    if not new_events and not audits and checkpoint is None:
        return []  # streamed pieces only
    saved = None
    if (
        checkpoint is not None
    ):  # a versioned checkpoint is JSON already; AutoGen's raw state may hold datetimes
        state = checkpoint.state if checkpoint.state.get("v") is not None else jsonable(checkpoint.state)
        saved = (checkpoint.turn, state, checkpoint.pending)
    return await store.append_batch(tid, new_events, audits, saved, fence=fence)


def audit_record(ev: Event) -> tuple[str, str, dict[str, Any]] | None:
    """The audit trail's view of an event: (who, what, detail with the decision), or None if not audited."""
    record = _AUDITED.get(type(ev))
    return record(ev) if record is not None else None


def _human(ev: Any) -> tuple[str, str, dict[str, Any]]:
    action = {"task": "task", "say": "interjection", "interrupt": "interrupt"}[ev.mode]
    return ev.source, action, {"decision": "delivered", "text": ev.content}


def _approval_request(ev: Any) -> tuple[str, str, dict[str, Any]]:
    detail = {"decision": "waiting", "tool": ev.name, "arguments": ev.arguments, "request_id": ev.request_id}
    return ev.source, "approval requested", detail


def _approval_decision(ev: Any) -> tuple[str, str, dict[str, Any]]:
    if was_cancelled(ev):
        detail = {"decision": "cancelled", "tool": ev.name, "request_id": ev.request_id, "reason": ev.reason}
        return ev.actor, "approval cancelled", detail
    decision = "approved" if ev.approved else "denied"
    detail = {"decision": decision, "tool": ev.name, "request_id": ev.request_id, "reason": ev.reason}
    return ev.actor, "approve" if ev.approved else "deny", detail


def _validation(ev: Any) -> tuple[str, str, dict[str, Any]]:
    decision = "passed" if ev.passed else "failed"
    return (
        ev.source,
        "validation",
        {"decision": decision, "attempt": ev.attempt, "problems": ev.problems, "text": ev.content},
    )


def _question(ev: Any) -> tuple[str, str, dict[str, Any]]:
    return ev.source, "question", {"decision": "waiting", "question_id": ev.question_id, "text": ev.content}


def _answer(ev: Any) -> tuple[str, str, dict[str, Any]]:
    decision = "timed out" if ev.timed_out else "answered"
    return ev.actor, "answer", {"decision": decision, "question_id": ev.question_id, "text": ev.content}


def _escalation(ev: Any) -> tuple[str, str, dict[str, Any]]:
    positions = [p.model_dump() for p in ev.positions]
    return (
        ev.source,
        "escalation",
        {
            "decision": "waiting",
            "kind": ev.kind,
            "escalation_id": ev.escalation_id,
            "text": ev.content,
            "positions": positions,
        },
    )


def _escalation_resolved(ev: Any) -> tuple[str, str, dict[str, Any]]:
    detail = {
        "decision": ev.decision,
        "choice": ev.choice,
        "escalation_id": ev.escalation_id,
        "text": ev.content,
    }
    return ev.actor, "escalation resolved", detail


def _vote(ev: Any) -> tuple[str, str, dict[str, Any]]:
    detail = {"decision": ev.decision or ev.outcome, "round": ev.round, "votes": ev.votes, "tally": ev.tally}
    return ev.source, "vote", detail


_AUDITED: dict[type, Callable[[Any], tuple[str, str, dict[str, Any]]]] = {
    HumanMessageEvent: _human,
    ApprovalRequestEvent: _approval_request,
    ApprovalDecisionEvent: _approval_decision,
    ValidationEvent: _validation,
    QuestionEvent: _question,
    AnswerEvent: _answer,
    EscalationEvent: _escalation,
    EscalationResolvedEvent: _escalation_resolved,
    VoteEvent: _vote,
}
"""The events the audit trail records, and how."""
