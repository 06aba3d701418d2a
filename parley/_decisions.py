"""What a run waits on a human for: approvals of tool calls, answers to questions, settled escalations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any, Literal

from ._text import human_text
from .errors import ConfigError, UnknownRequestError
from .events import (
    AnswerEvent,
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    Position,
    QuestionEvent,
)
from .human import HumanPolicy
from .paths import new_id

__all__ = ["CANCELLED_BY", "Decisions", "was_cancelled"]

CANCELLED_BY = "parley"
"""The actor of an approval the run's end cancelled: nobody decided it."""


def was_cancelled(ev: ApprovalDecisionEvent) -> bool:
    """An approval nobody decided: the run ended while it waited."""
    return ev.actor == CANCELLED_BY and not ev.approved and ev.content == "cancelled"


class Decisions:
    """The open and settled decisions of one run. Each opens with an event and is settled by a human (or a
    standing rule, or a timeout), which emits the decision event and wakes whoever waits on it."""

    def __init__(
        self, emit: Callable[[Event], None], live_turn: Callable[[], int], policy: HumanPolicy
    ) -> None:
        self._emit = emit
        self._live_turn = live_turn
        self._policy = policy
        """Decisions taken in advance (the CLI's --approve/--deny); what it leaves open waits for a human."""
        self._approvals: dict[str, tuple[asyncio.Future[tuple[bool, str]], ApprovalRequestEvent]] = {}
        self._escalations: dict[str, tuple[asyncio.Future[EscalationResolvedEvent], EscalationEvent]] = {}
        self._questions: dict[str, tuple[asyncio.Future[AnswerEvent], QuestionEvent]] = {}
        self.ended = False
        """Set when the run has ended: timed-out questions are no longer answered."""

    # -- what is waiting ---------------------------------------------------------------------

    @property
    def approvals(self) -> list[ApprovalRequestEvent]:
        return [req for fut, req in self._approvals.values() if not fut.done()]

    @property
    def escalations(self) -> list[EscalationEvent]:
        return [ev for fut, ev in self._escalations.values() if not fut.done()]

    @property
    def questions(self) -> list[QuestionEvent]:
        return [ev for fut, ev in self._questions.values() if not fut.done()]

    # -- opened by the team ------------------------------------------------------------------

    def request_approval(
        self, role: str, tool: str, args: dict[str, Any]
    ) -> asyncio.Future[tuple[bool, str]]:
        # Parley's own id, never the model's call id: two calls sharing an id must not share one decision.
        request_id = new_id()
        fut: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        req = ApprovalRequestEvent(
            source=role,
            name=tool,
            arguments=args,
            request_id=request_id,
            content=f"{role} wants to call {tool}",
            turn=self._live_turn(),
        )
        self._approvals[request_id] = (fut, req)
        self._emit(req)
        verdict = self._policy.approval(req)
        if verdict is not None:
            self.decide(request_id, verdict.approved, verdict.reason, verdict.actor)
        return fut

    def open_escalation(
        self,
        kind: str,
        source: str,
        content: str,
        positions: list[Position],
    ) -> tuple[EscalationEvent, asyncio.Future[EscalationResolvedEvent]]:
        """`kind` is one of validation, tie, disagreement (the event refuses others)."""
        eid = uuid.uuid4().hex[:12]
        fut: asyncio.Future[EscalationResolvedEvent] = asyncio.get_running_loop().create_future()
        ev = EscalationEvent.model_validate(
            {
                "source": source,
                "content": content,
                "kind": kind,
                "positions": positions,
                "escalation_id": eid,
                "turn": self._live_turn(),
            }
        )
        self._escalations[eid] = (fut, ev)
        return ev, fut

    def open_question(
        self,
        source: str,
        question: str,
        timeout_s: float | None,
        default: str,
    ) -> tuple[QuestionEvent, asyncio.Future[AnswerEvent]]:
        qid = uuid.uuid4().hex[:12]
        fut: asyncio.Future[AnswerEvent] = asyncio.get_running_loop().create_future()
        ev = QuestionEvent(
            source=source,
            content=question,
            question_id=qid,
            timeout_s=timeout_s,
            default=default,
            turn=self._live_turn(),
        )
        self._questions[qid] = (fut, ev)
        if timeout_s is not None:
            asyncio.get_running_loop().call_later(timeout_s, self._time_out, qid)
        return ev, fut

    # -- settled by a human --------------------------------------------------------------------

    def decide(self, request_id: str, approved: bool, reason: str, actor: str) -> None:
        entry = self._approvals.get(request_id)
        if entry is None:
            raise UnknownRequestError("approval request", request_id, [r.request_id for r in self.approvals])
        fut, req = entry
        if fut.done():
            return
        self._emit(
            ApprovalDecisionEvent(
                source=actor,
                name=req.name,
                request_id=request_id,
                approved=approved,
                reason=reason.strip(),
                actor=actor,
                turn=req.turn,
                content=("approved" if approved else "denied") + (f": {reason}" if reason else ""),
            )
        )
        fut.set_result((approved, reason.strip()))

    def resolve(
        self, escalation_id: str, *, choose: int | None, text: str | None, proceed: bool, actor: str
    ) -> None:
        entry = self._escalations.get(escalation_id)
        if entry is None:
            raise UnknownRequestError(
                "escalation", escalation_id, [e.escalation_id for e in self.escalations]
            )
        fut, ev = entry
        if sum((choose is not None, bool(text and text.strip()), proceed)) != 1:
            raise ConfigError(
                "resolve an escalation with exactly one of: choose=N, text=YOUR ANSWER, proceed=True"
            )
        if fut.done():
            return
        decision: Literal["choose", "continue", "write"]
        if choose is not None:
            if not 1 <= choose <= len(ev.positions):
                raise ConfigError(f"choose a position from 1 to {len(ev.positions)}, not {choose}")
            decision, content = "choose", ev.positions[choose - 1].text
        elif proceed:
            decision, content = "continue", "continue as before"
        else:
            decision, content = "write", human_text(text or "", "answer").strip()
        resolved = EscalationResolvedEvent(
            source=actor,
            escalation_id=escalation_id,
            decision=decision,
            choice=choose,
            content=content,
            actor=actor,
            turn=ev.turn,
        )
        self._emit(resolved)
        fut.set_result(resolved)

    def answer(self, question_id: str, text: str, actor: str) -> None:
        if question_id not in self._questions:
            raise UnknownRequestError("question", question_id, [q.question_id for q in self.questions])
        if not text or not text.strip():
            raise ConfigError("an empty answer cannot be sent: type the answer to the question")
        self._settle_question(question_id, human_text(text, "answer"), actor, timed_out=False)

    def _settle_question(self, question_id: str, text: str, actor: str, *, timed_out: bool) -> None:
        fut, q = self._questions[question_id]
        if fut.done():
            return
        ans = AnswerEvent(
            source=actor, question_id=question_id, content=text, timed_out=timed_out, actor=actor, turn=q.turn
        )
        self._emit(ans)
        fut.set_result(ans)

    def _time_out(self, question_id: str) -> None:
        if not self.ended:
            self._settle_question(
                question_id, self._questions[question_id][1].default, "parley", timed_out=True
            )

    def close(self, outcome: str) -> str | None:
        """The run ended: what still waits is cancelled and said so on record (stopping decides nothing).
        Returns the run's detail when an escalation was left open."""
        self.ended = True
        detail = None
        for afut, req in self._approvals.values():
            if not afut.done() or afut.cancelled():  # on record as cancelled: the call never ran
                afut.cancel()
                self._emit(
                    ApprovalDecisionEvent(
                        source=CANCELLED_BY,
                        name=req.name,
                        request_id=req.request_id,
                        approved=False,
                        reason=f"cancelled: the run ended ({outcome}) before anyone decided",
                        actor=CANCELLED_BY,
                        turn=req.turn,
                        content="cancelled",
                    )
                )
        for fut, esc in self._escalations.values():
            if not fut.done() or fut.cancelled():
                fut.cancel()
                self._emit(
                    EscalationResolvedEvent(
                        source="parley",
                        escalation_id=esc.escalation_id,
                        decision="unresolved",
                        content=f"the run ended ({outcome}) before anyone decided",
                        actor="parley",
                        turn=esc.turn,
                    )
                )
                detail = detail or f"an escalation was left open: {esc.content}"
        for fut, q in self._questions.values():
            if not fut.done() or fut.cancelled():
                fut.cancel()
                self._emit(
                    AnswerEvent(
                        source="parley",
                        question_id=q.question_id,
                        timed_out=True,
                        actor="parley",
                        content=f"(unanswered: the run ended ({outcome}))",
                        turn=q.turn,
                    )
                )
        return detail
