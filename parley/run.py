"""Runs: one task given to a team, until it stops.

Iterate a `Run` for typed events. While it runs, `say()` joins the conversation after the
current turn, `interrupt()` abandons the current turn now and continues with the human
message, `stop()` ends the run now.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autogen_agentchat.base import Response, TaskResult
from autogen_agentchat.messages import (
    BaseChatMessage,
    HandoffMessage,
    ModelClientStreamingChunkEvent,
    TextMessage,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
    ToolCallSummaryMessage,
)
from autogen_core import CancellationToken

from ._outbox import Checkpoint, persist
from ._text import human_text, redact_secrets
from ._toolhost import MAX_ARGUMENTS, standing_decision
from .engine.autogen.agent import ParleyNotice
from .engine.autogen.termination import empty_reply
from .errors import ConfigError
from .events import (
    AnswerEvent,
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    ChunkEvent,
    ErrorEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    FileEvent,
    HumanMessageEvent,
    HumanQueuedEvent,
    MessageEvent,
    NoticeEvent,
    Position,
    QuestionEvent,
    RunResult,
    RunStartedEvent,
    SpeakerSelectedEvent,
    SubtaskEvent,
    ToolCallEvent,
    ToolResultEvent,
    TriggerEvent,
    TurnAbandonedEvent,
    UsageEvent,
    ValidationEvent,
)
from .models import BudgetExceeded, CallRecord, Retry
from .paths import new_id

if TYPE_CHECKING:
    from .conversation import Conversation


class _QuietCancel(logging.Filter):
    """AutoGen's runtime logs every exception an agent's handler raises, with its traceback, at ERROR on the
    `autogen_core` logger: the CancelledError of parley's own stop and interrupt too. In a program that sets up
    no logging, Python prints those records to stderr. The run reports a cancel as its own events
    (turn_abandoned, result `stopped`), so only those records are dropped; AutoGen's other errors still reach
    the program's logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


logging.getLogger("autogen_core").addFilter(_QuietCancel())


__all__ = ["Run"]

CANCEL_GRACE_S = 0.5
"""How long a cancelled team gets to wind down before the run stops waiting for it."""
BUDGET_GRACE_S = 0.5
"""Once the token budget is spent, how long the answer whose model call spent it gets to arrive before the run is
cancelled anyway (that call may have asked for a tool, or be the selector's, and bring no answer)."""
PARALLEL_PATTERNS = frozenset({"fanout", "consensus"})
"""Patterns whose steps run several roles at once (AutoGen's GraphFlow): the team checks its termination only once
every role of the step has answered."""


class Run:
    """One task given to a team, until it stops. Iterate it for events."""

    def __init__(self, conversation: Conversation, task: str) -> None:
        self.conversation = conversation
        self.task = task
        self.result: RunResult | None = None
        self.events: list[Event] = []
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._human: list[tuple[str, str]] = []
        self._cancel_reason: str | None = None
        self._token: CancellationToken | None = None
        self._task: asyncio.Task[None] | None = None
        self._partial: dict[str, str] = {}
        self._speaker: str | None = None
        self.guard = conversation.guard
        self.guard.new_run()
        self._error: tuple[str, str] | None = None
        self._p0 = self._c0 = self._n0 = self._turn0 = 0
        self._approvals: dict[str, tuple[asyncio.Future[tuple[bool, str]], ApprovalRequestEvent]] = {}
        self._outbox: asyncio.Queue[Event | Checkpoint] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._store_failed = False
        self._consumer: asyncio.Task[None] | None = None
        self._escalations: dict[str, tuple[asyncio.Future[EscalationResolvedEvent], EscalationEvent]] = {}
        self._questions: dict[str, tuple[asyncio.Future[AnswerEvent], QuestionEvent]] = {}
        self._spent_by: str | None = None
        """Whose model call spent the token budget, once one has."""
        self._budget_timer: asyncio.TimerHandle | None = None
        self._settled: str | None = None
        self._settled_detail = ""
        """The answer a human settled a disagreement with, when one did."""
        self._woken: list[BaseChatMessage] = []
        """Answers of event-driven roles, fed to the team with the next segment."""
        self.number = 1 + sum(isinstance(e, RunStartedEvent) for e in conversation.history)
        """This run's place among the conversation's runs (1 for the first)."""

    # -- commands ------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Join the conversation after the current agent's turn. Messages keep their order."""
        self._queue_human(text, "say")
        self.guard.interject = True

    def interrupt(self, text: str) -> None:
        """Abandon the current turn now (the model call is cancelled) and continue with `text`."""
        self._queue_human(text, "interrupt")
        self._cancel("interrupt")

    def stop(self) -> None:
        """End the run now: the current model call is cancelled and no other is made."""
        self._cancel("stopped")

    def say_after(self, turn: int, text: str, *, mode: str = "say") -> None:
        """Deliver `text` once `turn` agent turns of this run are done, exactly at that boundary (a scripted
        human's interjection). Turn 0 joins with the task."""
        text = human_text(text)
        if turn <= 0:
            self._human.append((mode, text))
        else:
            self.guard.scheduled.setdefault(turn, []).append((mode, text))

    def leave_escalated(self) -> None:
        """End the run now because nobody is there to settle its escalation (stop reason `escalation`).
        The escalation stays on record as unresolved."""
        self._cancel("escalation")

    def approve(self, request_id: str, *, actor: str = "user") -> None:
        """Let a waiting tool call go ahead."""
        self._decide(request_id, True, "", actor)

    def deny(self, request_id: str, reason: str = "", *, actor: str = "user") -> None:
        """Refuse a waiting tool call; the agent sees the reason as the tool's error."""
        self._decide(request_id, False, human_text(reason, "reason") if reason.strip() else "", actor)

    @property
    def pending_approvals(self) -> list[ApprovalRequestEvent]:
        return [req for fut, req in self._approvals.values() if not fut.done()]

    @property
    def pending_escalations(self) -> list[EscalationEvent]:
        """Escalations waiting for a human; the run does not go on until each is resolved."""
        return [ev for fut, ev in self._escalations.values() if not fut.done()]

    @property
    def pending_questions(self) -> list[QuestionEvent]:
        """Questions a role asked the human (ask_human) that nobody has answered yet."""
        return [ev for fut, ev in self._questions.values() if not fut.done()]

    def resolve(self, escalation_id: str, *, choose: int | None = None, text: str | None = None,
                proceed: bool = False, actor: str = "user") -> None:
        """Settle an escalation: `choose` a position (1-based), write your own `text`, or `proceed` (the team
        continues as it was). Exactly one of the three."""
        entry = self._escalations.get(escalation_id)
        if entry is None:
            raise KeyError(f"no escalation {escalation_id!r} (waiting: {[e.escalation_id for e in self.pending_escalations]})")
        fut, ev = entry
        if sum((choose is not None, bool(text and text.strip()), proceed)) != 1:
            raise ConfigError("resolve an escalation with exactly one of: choose=N, text=YOUR ANSWER, proceed=True")
        if fut.done():
            return
        if text is not None and text.strip():
            text = human_text(text, "answer")
        if choose is not None:
            if not 1 <= choose <= len(ev.positions):
                raise ConfigError(f"choose a position from 1 to {len(ev.positions)}, not {choose}")
            decision, content = "choose", ev.positions[choose - 1].text
        elif proceed:
            decision, content = "continue", "continue as before"
        else:
            decision, content = "write", (text or "").strip()
        resolved = EscalationResolvedEvent(source=actor, escalation_id=escalation_id, decision=decision,  # type: ignore[arg-type]
                                           choice=choose, content=content, actor=actor, turn=ev.turn)
        self._emit(resolved)
        fut.set_result(resolved)

    def answer(self, question_id: str, text: str, *, actor: str = "user") -> None:
        """Answer a role's question; the role continues with `text`."""
        entry = self._questions.get(question_id)
        if entry is None:
            raise KeyError(f"no question {question_id!r} (waiting: {[q.question_id for q in self.pending_questions]})")
        if not text or not text.strip():
            raise ConfigError("an empty answer cannot be sent: type the answer to the question")
        self._settle_question(question_id, human_text(text, "answer"), actor, timed_out=False)

    def _settle_question(self, question_id: str, text: str, actor: str, *, timed_out: bool) -> None:
        fut, q = self._questions[question_id]
        if fut.done():
            return
        ans = AnswerEvent(source=actor, question_id=question_id, content=text, timed_out=timed_out, actor=actor,
                          turn=q.turn)
        self._emit(ans)
        fut.set_result(ans)

    def _open_escalation(self, kind: str, source: str, content: str, positions: list[Position],
                         ) -> tuple[EscalationEvent, asyncio.Future[EscalationResolvedEvent]]:
        eid = uuid.uuid4().hex[:12]
        fut: asyncio.Future[EscalationResolvedEvent] = asyncio.get_running_loop().create_future()
        ev = EscalationEvent(source=source, content=content, kind=kind, positions=positions,  # type: ignore[arg-type]
                             escalation_id=eid, turn=self._live_turn())
        self._escalations[eid] = (fut, ev)
        return ev, fut

    def _open_question(self, source: str, question: str, timeout_s: float | None, default: str,
                       ) -> tuple[QuestionEvent, asyncio.Future[AnswerEvent]]:
        qid = uuid.uuid4().hex[:12]
        fut: asyncio.Future[AnswerEvent] = asyncio.get_running_loop().create_future()
        ev = QuestionEvent(source=source, content=question, question_id=qid, timeout_s=timeout_s, default=default,
                           turn=self._live_turn())
        self._questions[qid] = (fut, ev)
        if timeout_s is not None:
            asyncio.get_running_loop().call_later(timeout_s, self._time_out_question, qid)
        return ev, fut

    def _time_out_question(self, question_id: str) -> None:
        if self.result is None:
            self._settle_question(question_id, self._questions[question_id][1].default, "parley", timed_out=True)

    async def wait(self) -> RunResult:
        if self._task is not None:
            await asyncio.shield(self._task)
        assert self.result is not None
        return self.result

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, RunResult):
                return

    # -- internals -----------------------------------------------------------------------

    def _queue_human(self, text: str, mode: str) -> None:
        if not text or not text.strip():
            raise ConfigError("an empty message cannot be sent: type something")
        text = human_text(text)
        if self.result is not None:
            raise RuntimeError("this run has ended; use Conversation.say() to continue the conversation")
        self._human.append((mode, text))
        self._emit(HumanQueuedEvent(source="user", content=text, mode=mode, turn=self.conversation.turn))

    def _cancel(self, reason: str) -> None:
        if self.result is not None or self._cancel_reason in ("stopped", "timeout", "escalation", "max_tokens"):
            return
        self._cancel_reason = reason
        if self._token is not None:
            self._token.cancel()
            asyncio.get_running_loop().call_later(CANCEL_GRACE_S, self._force_end, self._consumer)

    def _emit(self, event: Event) -> None:
        if self._writer is not None:
            self._outbox.put_nowait(event)  # written first, shown after (see _write)
        else:
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if not isinstance(event, ChunkEvent):  # chunks are for live display: the finished message is kept
            self.events.append(event)
            self.conversation.history.append(event)
        for listener in list(self.conversation.listeners):
            listener(event)
        self._queue.put_nowait(event)

    def _persist_checkpoint(self, state: Mapping[str, Any]) -> None:
        if self._writer is not None and not self._store_failed:
            pending = [t for _, t in self._human]
            self._outbox.put_nowait(Checkpoint(self.conversation.turn + 1, dict(state), pending))

    @property
    def unsaved(self) -> bool:
        """True once saving the conversation failed: from the failed write on, nothing of the run is kept."""
        return self._store_failed

    async def _write(self) -> None:
        """Write each event to the store, then show it. A failed write ends the run with the error, and what
        was not saved is not shown: the error says so, then the run's result (stop reason `error`) ends it.
        Nothing shown then claims to be kept when it is not."""
        conv = self.conversation
        store, tid = conv.store, conv.thread_id
        assert store is not None and tid is not None
        while True:
            items = [await self._outbox.get()]
            while not self._outbox.empty() and not isinstance(items[-1], RunResult):
                items.append(self._outbox.get_nowait())
            if not self._store_failed:
                try:
                    await persist(store, tid, items, self.number)
                except Exception as exc:
                    self._store_failed = True
                    self._error = (type(exc).__name__, f"saving the conversation failed: {exc}; the run stopped, "
                                   "and what was not saved is not shown")
                    self._deliver(ErrorEvent(source="parley", content=self._error[1], error_type=self._error[0],
                                             turn=conv.turn))
                    self._cancel("error")
            for item in items:
                if isinstance(item, RunResult) and self._store_failed and self._error is not None:
                    if item.stop_reason != "error":  # the last write failed after the run had ended well
                        item = self.result = item.model_copy(update={"stop_reason": "error",
                                                                     "detail": f"{self._error[0]}: {self._error[1]}"})
                    self._deliver(item)
                elif not isinstance(item, Checkpoint) and not self._store_failed:
                    self._deliver(item)
                self._outbox.task_done()
            if isinstance(items[-1], RunResult):
                return

    def _files_written(self, role: str, tool: str, paths: list[Path]) -> None:
        root = self.conversation.workspace
        for path in paths:
            name = str(path.relative_to(root))
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self._emit(FileEvent(source=role, content=f"{role} wrote {name}", name=name, path=str(path),
                                 mime=mime, size=path.stat().st_size, tool=tool, turn=self._live_turn()))

    def _decide(self, request_id: str, approved: bool, reason: str, actor: str) -> None:
        entry = self._approvals.get(request_id)
        if entry is None:
            raise KeyError(f"no approval request {request_id!r} (pending: {[r.request_id for r in self.pending_approvals]})")
        fut, req = entry
        if fut.done():
            return
        self._emit(ApprovalDecisionEvent(source=actor, name=req.name, request_id=request_id, approved=approved,
                                         reason=reason.strip(), actor=actor, turn=req.turn,
                                         content=("approved" if approved else "denied") + (f": {reason}" if reason else "")))
        fut.set_result((approved, reason.strip()))

    async def _request_approval(self, role: str, tool: str, args: dict[str, Any], call_id: str | None,
                                token: CancellationToken) -> tuple[bool, str]:
        # Parley's own id, never the model's call id: two calls sharing an id must not share one decision.
        request_id = new_id()
        fut: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        req = ApprovalRequestEvent(source=role, name=tool, arguments=args, request_id=request_id,
                                   content=f"{role} wants to call {tool}", turn=self._live_turn())
        self._approvals[request_id] = (fut, req)
        token.link_future(fut)
        self._emit(req)
        standing = standing_decision(self.conversation.approvals, tool)
        if standing is not None:
            self._decide(request_id, standing, "" if standing else "denied by a standing rule", "policy")
        return await fut

    def _on_usage(self, rec: CallRecord) -> None:
        meter = self.conversation.meter
        self._emit(UsageEvent(
            source=rec.source, model=rec.model, prompt_tokens=rec.prompt_tokens,
            completion_tokens=rec.completion_tokens, total_prompt_tokens=meter.prompt_tokens - self._p0,
            total_completion_tokens=meter.completion_tokens - self._c0, cost_usd=self._cost(),
            turn=self.conversation.turn + 1, estimated=rec.estimated, cancelled=rec.cancelled, reflection=rec.reflection,
        ))
        if self._spent_by is None and meter.exceeded() and self.result is None:
            self._budget_spent(rec)

    def _budget_spent(self, rec: CallRecord) -> None:
        """The meter (which sees every call, the selector's and every parallel branch's) passed the budget. The
        team's own check runs only when every branch of a parallel step has answered, which may be long after, so
        the run is cancelled like the wall-clock limit cancels it: every call in flight is abandoned. The answer
        whose call spent the budget is shown first (see _on_message); a call with no answer to wait for, or an
        answer that does not come, does not hold the run up for more than BUDGET_GRACE_S."""
        self._spent_by = rec.source
        if rec.cancelled:
            self._cancel("max_tokens")
            return
        self._budget_timer = asyncio.get_running_loop().call_later(BUDGET_GRACE_S, self._cancel, "max_tokens")

    def _on_retry(self, note: Retry) -> None:
        if note.empty:
            self._emit(NoticeEvent(source=note.source, level="warning", turn=self._live_turn(), content=(
                f"{note.source}'s model answered nothing; asking it once more")))
            return
        self._emit(NoticeEvent(source=note.source, level="warning", turn=self._live_turn(), content=(
            f"{note.source}'s model call failed ({redact_secrets(note.error)}); retrying in {note.delay_s:.1f} s "
            f"(attempt {note.attempt + 1} of {note.attempts})")))

    def _on_pick(self, name: str, fallback: bool) -> None:
        self._speaker = name
        content = name if not fallback else f"{name} (the selector's answer named no role; next in order)"
        self._emit(SpeakerSelectedEvent(source="selector", content=content, fallback=fallback,
                                        turn=self._live_turn()))

    def _live_turn(self) -> int:
        # Callbacks run as the manager works, which may be ahead of the stream we consume;
        # the guard counts turns in the manager's own order.
        return self._turn0 + self.guard.turns + 1

    def _cost(self) -> float | None:
        calls = self.conversation.meter.calls[self._n0 :]
        costs = [c.cost_usd for c in calls]
        return None if any(c is None for c in costs) else float(sum(c for c in costs if c is not None))

    async def _drive(self) -> None:
        conv = self.conversation
        meter = conv.meter
        self._p0, self._c0, self._n0 = meter.prompt_tokens, meter.completion_tokens, len(meter.calls)
        self._turn0 = conv.turn
        meter.budget = meter.total_tokens + conv.limits.max_tokens if conv.limits.max_tokens else None
        meter.listeners.append(self._on_usage)
        meter.retry_listeners.append(self._on_retry)
        loop = asyncio.get_running_loop()
        if conv.store is not None:
            self._writer = loop.create_task(self._write())
        timer = loop.call_later(conv.limits.timeout_s, self._cancel, "timeout") if conv.limits.timeout_s else None
        self._emit(RunStartedEvent(source="parley", content=self.task, team=conv.team.name, model=conv.model,
                                   pattern=conv.team.pattern, roles=conv.team.role_names, turn=conv.turn))
        for notice in conv.notices:
            self._emit(NoticeEvent(source="parley", content=notice, level="warning", turn=conv.turn))
        self._human[:0] = [*conv._pending, ("task", self.task)]
        conv._pending = []
        outcome = "error"
        try:
            outcome = await self._segments()
        except BaseException as exc:  # our own task was cancelled, or a bug: still end with a result
            self._error = (type(exc).__name__, redact_secrets(str(exc)) or type(exc).__name__)
            outcome = "error"
            conv._team = None
            if not isinstance(exc, Exception):
                self._finish(outcome)
                if self._writer is not None:
                    self._writer.cancel()
                raise
        finally:
            if timer is not None:
                timer.cancel()
            if self._budget_timer is not None:
                self._budget_timer.cancel()
            meter.listeners.remove(self._on_usage)
            meter.retry_listeners.remove(self._on_retry)
        if self._writer is not None:
            await self._outbox.join()  # the team may have run ahead of the store: let it catch up
            if self._store_failed:
                outcome = "error"
        self._finish(outcome)
        if self._writer is not None:
            await self._writer

    async def _segments(self) -> str:
        """Run the team until it stops for good: human messages and woken roles start a new segment."""
        while True:
            outcome = await self._segment()
            if outcome == "trigger":
                outcome = await self._wake()
                if outcome == "trigger":
                    continue
            if outcome in ("interjection", "interrupt") and (self._human or self.guard.due):
                if outcome == "interrupt":
                    self._cancel_reason = None
                continue
            if outcome == "max_turns" and self._escalates_disagreement():
                outcome = await self._escalate_disagreement()
                if outcome == "continue":
                    continue
            return outcome

    def _escalates_disagreement(self) -> bool:
        loop = self.conversation.team.loop
        return self.conversation.team.pattern == "loop" and loop is not None and loop.on_max_rounds == "escalate"

    async def _escalate_disagreement(self) -> str:
        """A loop that ran out of rounds without agreement: each role's last word goes to a human."""
        conv = self.conversation
        last: dict[str, str] = {}
        for ev in self.events:
            if isinstance(ev, MessageEvent) and ev.kind == "text":
                last[ev.source] = ev.content
        positions = [Position(who=r.name, text=last[r.name]) for r in conv.team.scheduled if r.name in last]
        rounds = conv.team.loop.max_rounds if conv.team.loop else 1
        event, decided = self._open_escalation(
            "disagreement", "parley", f"No agreement after {rounds} rounds: pick a position, write the answer, "
            f"or let the team go on for {rounds} more", positions)
        self._emit(event)
        if self._cancel_reason is not None:
            return self._cancel_reason
        self._token = token = CancellationToken()  # stop() cancels the wait
        token.link_future(decided)
        try:
            answer = await decided
        except asyncio.CancelledError:
            if self._cancel_reason is None:
                raise
            return self._cancel_reason
        finally:
            self._token = None
        if answer.decision == "continue":
            self.guard.extra_turns += rounds * len(conv.team.scheduled)
            return "continue"
        self._settled = answer.content
        self._settled_detail = f"settled by {answer.actor} after {rounds} rounds without agreement"
        return "completed"

    def _finish(self, outcome: str) -> None:
        conv = self.conversation
        if outcome == "interjection":  # a message arrived too late to be delivered
            outcome = "stopped"
        conv._pending = [*self.guard.due, *self._human]
        self._human = conv._pending
        self.guard.due = []
        details = {
            "stopped": "stopped by the user",
            "timeout": f"wall-clock limit of {conv.limits.timeout_s:g} s reached" if conv.limits.timeout_s else "timeout",
            "max_tokens": f"token budget of {conv.limits.max_tokens} reached",
            "completed": "the team finished",
        }
        for fut, esc in self._escalations.values():
            if not fut.done() or fut.cancelled():  # stopping resolves nothing: the escalation stays open on record
                fut.cancel()
                self._emit(EscalationResolvedEvent(source="parley", escalation_id=esc.escalation_id, decision="unresolved",
                                                   content=f"the run ended ({outcome}) before anyone decided",
                                                   actor="parley", turn=esc.turn))
                details.setdefault("escalation", f"an escalation was left open: {esc.content}")
        for fut, q in self._questions.values():
            if not fut.done() or fut.cancelled():
                fut.cancel()
                self._emit(AnswerEvent(source="parley", question_id=q.question_id, timed_out=True, actor="parley",
                                       content=f"(unanswered: the run ended ({outcome}))", turn=q.turn))
        detail = self.guard.detail if outcome in ("stop_text", "max_turns", "loop") else details.get(outcome, "")
        if self._settled is not None and outcome == "completed":
            detail = self._settled_detail
        if outcome == "max_tokens" and conv.limits.max_tokens:  # the same words whichever check saw it first
            used = conv.meter.total_tokens - self._p0 - self._c0
            detail = f"token budget of {conv.limits.max_tokens:,} reached ({used:,} used)"
        if outcome == "error" and self._error:
            detail = f"{self._error[0]}: {self._error[1]}"
        self.result = RunResult(
            source="parley", stop_reason=outcome, turns=self.guard.turns, detail=detail,  # type: ignore[arg-type]
            prompt_tokens=conv.meter.prompt_tokens - self._p0, completion_tokens=conv.meter.completion_tokens - self._c0,
            cost_usd=self._cost(), turn=conv.turn, undelivered=[t for _, t in self._human],
            content=self._final_text(),
        )
        conv.meter.budget = None
        self._emit(self.result)

    def _final_text(self) -> str:
        if self._settled is not None:
            return self._settled
        for ev in reversed(self.events):
            if isinstance(ev, MessageEvent) and ev.kind != "handoff":  # "Transferred to ..." says nothing
                return ev.content
        return ""

    async def _wake(self) -> str:
        """Run the event-driven roles whose triggers fired; their answers join the team at the next turn."""
        conv = self.conversation
        woken, self.guard.wake = self.guard.wake, []
        for role, trigger in woken:
            agent = conv._event_agents.get(role)
            if agent is None:
                continue
            self._emit(TriggerEvent(source="parley", role=role, on=trigger, content=f"{role} woken: {trigger}",
                                    turn=conv.turn + 1))
            seen = conv._woken_at.get(role, 0)
            news: list[BaseChatMessage] = [
                TextMessage(content=e.content, source=e.source if isinstance(e, MessageEvent) else "user")
                for e in conv.history[seen:] if isinstance(e, (MessageEvent, HumanMessageEvent)) and e.source != role
            ]
            conv._woken_at[role] = len(conv.history)
            self._token = token = CancellationToken()
            try:
                async for item in agent.on_messages_stream(news or [TextMessage(content=self.task, source="user")], token):
                    if isinstance(item, Response):
                        self._woken.append(item.chat_message)
                        self._on_message(item.chat_message)
                    else:
                        self._on_event(item)
            except asyncio.CancelledError:
                if self._cancel_reason is None:
                    raise
            finally:
                self._token = None
            if self._cancel_reason is not None:
                self._abandon(self._cancel_reason)
                return self._cancel_reason
        return "trigger"

    def _take_human(self) -> list[BaseChatMessage]:
        batch, self._human = [*self.guard.due, *self._human], []
        self.guard.due = []
        out: list[BaseChatMessage] = [*self._woken]
        self._woken = []
        back_to, self.guard.handed_back = self.guard.handed_back, None
        for mode, text in batch:
            self._emit(HumanMessageEvent(source="user", content=text, mode=mode, turn=self.conversation.turn))  # type: ignore[arg-type]
            if back_to is not None:  # a swarm waiting on the human: hand the conversation back
                out.append(HandoffMessage(content=text, source="user", target=back_to))
                back_to = None
            else:
                out.append(TextMessage(content=text, source="user"))
        return out

    async def _segment(self) -> str:
        """One `run_stream` on the team; returns why it ended."""
        conv = self.conversation
        team, fresh = await conv._ensure_team()
        if self._cancel_reason is not None:
            return self._cancel_reason
        # From here to the first iteration nothing awaits, so no command can slip between.
        self.guard.begin_segment()
        batch = self._take_human()
        checkpoints = conv.checkpoints
        feed: list[BaseChatMessage] = [*(checkpoints.unsaved if fresh else []), *batch]
        checkpoints.unsaved = feed if fresh else [*checkpoints.unsaved, *batch]
        fed_ids = {m.id for m in feed}
        self._token = token = CancellationToken()
        failures0 = len(conv.meter.failures)
        self._consumer = consumer = asyncio.get_running_loop().create_task(self._consume(team, feed, token, fed_ids))
        try:
            await consumer
        except BaseException as exc:
            conv._team = None  # after any failure the team object is suspect; rebuild from the checkpoint
            if self._cancel_reason is not None and isinstance(exc, (asyncio.CancelledError, Exception)):
                self._abandon(self._cancel_reason)
                return self._cancel_reason
            if not isinstance(exc, Exception):
                raise
            if isinstance(exc, BudgetExceeded) or conv.meter.exceeded():
                self._abandon("max_tokens")
                return "max_tokens"
            failures = conv.meter.failures[failures0:]
            self._error = _original_error(exc, failures)
            source = failures[-1].source if failures else (self._speaker or "parley")
            self._emit(ErrorEvent(source=source, content=self._error[1],
                                  error_type=self._error[0], turn=conv.turn + 1))
            return "error"
        finally:
            self._token = None
            self._consumer = None
            if not consumer.done():  # our own task was cancelled from outside
                consumer.cancel()
        if self._cancel_reason is not None:
            conv._team = None
            self._abandon(self._cancel_reason)
            return self._cancel_reason
        return self.guard.reason or "completed"

    async def _consume(self, team: Any, feed: list[BaseChatMessage], token: CancellationToken,
                       fed_ids: set[str]) -> None:
        conv = self.conversation
        async for item in team.run_stream(task=feed or None, cancellation_token=token):
            if isinstance(item, TaskResult):
                continue  # let the stream finish: AutoGen marks the team idle after its last yield
            if isinstance(item, BaseChatMessage) and item.id in fed_ids:
                continue
            if isinstance(item, BaseChatMessage) and item.source in conv.speakers:
                state = await conv.checkpoints.after_message(team, item)  # first thing, before any other await
                if state is not None:
                    self._persist_checkpoint(state)
                self._on_message(item)
            else:
                self._on_event(item)

    @staticmethod
    def _force_end(consumer: asyncio.Task[None] | None) -> None:
        """AutoGen waits for its runtime to go idle after a cancel, which never happens while a tool is
        still running: stop waiting. The team object is dropped; its clients refuse any further call."""
        if consumer is not None and not consumer.done():
            consumer.cancel()

    def _abandon(self, reason: str) -> None:
        for source, text in self._partial.items():
            if text:
                self._emit(TurnAbandonedEvent(source=source, content=text, reason=reason, turn=self.conversation.turn + 1))
        self._partial.clear()

    def _on_message(self, item: BaseChatMessage) -> None:
        conv = self.conversation
        if empty_reply(item):  # asked twice, answered nothing twice: said, and not a turn
            self._partial.pop(item.source, None)
            self._emit(NoticeEvent(source=item.source, level="warning", turn=conv.turn + 1, content=(
                f"{item.source}'s model answered nothing again: not counted as a turn")))
            return
        conv.turn += 1
        self._partial.pop(item.source, None)
        kind = "tool_summary" if isinstance(item, ToolCallSummaryMessage) else (
            "handoff" if isinstance(item, HandoffMessage) else "text")
        self._emit(MessageEvent(source=item.source, content=item.to_text(), kind=kind, turn=conv.turn))  # type: ignore[arg-type]
        if self._spent_by == item.source:  # the answer that spent the budget is shown: now end the run
            self._cancel("max_tokens")
        guard = self.guard
        cap = guard.limits.max_turns + guard.extra_turns
        if conv.team.pattern in PARALLEL_PATTERNS and item.source in guard.roles and guard.turns >= cap:
            # The team checks its turn cap only once every role of a parallel step has answered: the others would
            # go on for as long as they take. End the run now, as the wall-clock limit does.
            guard.detail = f"reached {cap} turns"
            self._cancel("max_turns")

    def _on_event(self, item: Any) -> None:
        turn = self.conversation.turn + 1
        if isinstance(item, ParleyNotice):
            if item.event is None:
                return
            event = item.event.model_copy(update={"turn": turn})
            if isinstance(event, ValidationEvent) and not event.passed:
                self._partial.pop(event.source, None)  # the next attempt streams afresh
            self._emit(event)
        elif isinstance(item, ModelClientStreamingChunkEvent):
            self._speaker = item.source
            self._partial[item.source] = self._partial.get(item.source, "") + item.content
            self._emit(ChunkEvent(source=item.source, content=item.content, turn=turn))
        elif isinstance(item, ToolCallRequestEvent):
            for call in item.content:
                if call.name in self.conversation.workers:
                    args = _parse_args(call.arguments)
                    task = str(args.get("task", "")) if isinstance(args, dict) else str(args)
                    self._emit(SubtaskEvent(source=item.source, subtask_id=call.id, worker=call.name, task=task,
                                            status="started", content=task, turn=turn))
                    continue
                shown = _clip_args(call.arguments)
                self._emit(ToolCallEvent(source=item.source, name=call.name, arguments=_parse_args(shown),
                                         call_id=call.id, content=shown, turn=turn))
        elif isinstance(item, ToolCallExecutionEvent):
            for res in item.content:
                if res.name in self.conversation.workers:
                    self._emit(SubtaskEvent(source=item.source, subtask_id=res.call_id, worker=res.name, task="",
                                            status="failed" if res.is_error else "done", content=res.content,
                                            turn=turn))
                    continue
                self._emit(ToolResultEvent(source=item.source, name=res.name, call_id=res.call_id,
                                           content=res.content, is_error=bool(res.is_error), turn=turn))


def _parse_args(arguments: str) -> dict[str, Any] | str:
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):  # a model's arguments nested thousands deep are text, not a crash
        return arguments
    return value if isinstance(value, dict) else arguments


def _clip_args(arguments: str) -> str:
    """A call's arguments as shown and stored: those over the limit (the call is refused, see _toolhost) are cut,
    so a model cannot fill the store and every reader's screen with one refused call."""
    if len(arguments) <= MAX_ARGUMENTS:
        return arguments
    return f"{arguments[:2000]}… ({len(arguments):,} characters; the call was refused: over {MAX_ARGUMENTS:,})"


def _original_error(exc: BaseException, failures: Sequence[Any]) -> tuple[str, str]:
    """AutoGen re-raises agent errors as RuntimeError('Type: message\\nTraceback...'): recover the original
    (with any secret a backend echoed in it masked)."""
    kind, message = _unwrapped_error(exc, failures)
    return kind, redact_secrets(message)


def _unwrapped_error(exc: BaseException, failures: Sequence[Any]) -> tuple[str, str]:
    if failures:
        return failures[-1].error_type, failures[-1].message
    text = str(exc)
    if isinstance(exc, RuntimeError) and ": " in text.split("\n", 1)[0]:
        first = text.partition("\nTraceback:")[0]
        kind, _, message = first.partition(": ")
        if kind.isidentifier():
            return kind, message
    return type(exc).__name__, text.split("\nTraceback:")[0]
