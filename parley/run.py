"""Runs: one task given to a team, until it stops.

Iterate a `Run` for typed events. While it runs, `say()` joins the conversation after the current turn,
`interrupt()` abandons the current turn now and continues with the human message, `stop()` ends the run now.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._decisions import Decisions
from ._outbox import Checkpoint
from ._outcome import final_text, last_positions, stop_detail
from ._publish import Publisher, ShowListener, WriteListener
from ._spend import RunSpend
from ._text import human_text, redact_secrets
from ._turns import TurnNumbers
from .engine import Cancel, MessageKind, Outcome, SegmentEnd
from .errors import ConfigError, RunError, RunStateError
from .events import (
    ApprovalRequestEvent,
    ErrorEvent,
    EscalationEvent,
    Event,
    FileEvent,
    HumanMessageEvent,
    HumanQueuedEvent,
    MessageEvent,
    NoticeEvent,
    QuestionEvent,
    RunResult,
    RunStartedEvent,
    SpeakerSelectedEvent,
    StopReason,
)
from .human import StandingRules
from .inbox import HumanMessage, Mode, use_inbox
from .models import BudgetExceeded

if TYPE_CHECKING:
    from .conversation import Conversation

__all__ = ["Run"]

FINAL = frozenset({"stopped", "timeout", "escalation", "max_tokens"})
"""Reasons to end a run that no later reason replaces."""


class Run:
    """One task given to a team, until it stops. Iterate it for events."""

    def __init__(
        self, conversation: Conversation, task: str, *, carried: bool = False, author: str = ""
    ) -> None:
        self.conversation = conversation
        self.task = task
        self.result: RunResult | None = None
        self.number = 1 + sum(isinstance(e, RunStartedEvent) for e in conversation.history)
        """This run's place among the conversation's runs (1 for the first)."""
        self._engine = conversation.engine
        self.guard = self._engine.guard
        self.guard.new_run()
        self._inbox = conversation.inbox
        if not carried:  # after what an earlier run left undelivered; a run carried on says nothing new
            self._inbox.put("task", task, author)
        self._publisher = Publisher(
            conversation.history, conversation.store, conversation.thread_id, self.number, self._store_failed
        )
        self._publisher.fence = conversation.fence
        self.decisions = Decisions(self.emit, self.live_turn, StandingRules(conversation.approvals))
        """What the run waits on a human for (approvals, questions, escalations)."""
        self._cancel_reason: Cancel | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: tuple[str, str] | None = None
        self.error: RunError | None = None
        """Why the run failed (stop reason `error`): the role, the turn and the original exception."""
        self._turn0 = 0
        self._turns = TurnNumbers()
        self._verdicts = 0
        """Messages from no role (a vote's tally): turns beyond the guard's count of the roles' turns (which
        counts a manager's delegations and workers' answers as given, so a turn cap ended run reports the cap)."""
        self._spend = RunSpend(
            conversation.meter,
            self.emit,
            lambda: self.conversation.turn + 1,
            self.live_turn,
            lambda: self._cancel("max_tokens"),
        )
        self._settled: tuple[str, str] | None = None
        """The answer a human settled a disagreement with, and the run's detail saying so."""
        self._detail = ""
        """Why the engine ended the run inside a turn (see end)."""
        self._waiting: asyncio.Future[Any] | None = None

    @property
    def events(self) -> list[Event]:
        """The run's events so far, as shown (streamed chunks aside)."""
        return self._publisher.events

    # -- commands ------------------------------------------------------------------------

    def say(self, text: str, *, author: str = "") -> None:
        """Join the conversation after the current agent's turn (`author`: who typed it). Messages keep order."""
        self._queue_human(text, "say", author)

    def interrupt(self, text: str, *, author: str = "") -> None:
        """Abandon the current turn now (the model call is cancelled) and continue with `text`."""
        self._queue_human(text, "interrupt", author)
        self._cancel("interrupt")

    def stop(self, *, actor: str = "") -> None:
        """End the run now (`actor`: who stopped it): the current model call is cancelled and no other is made."""
        self.end("stopped", f"stopped by {actor}" if actor else "")

    def say_after(self, turn: int, text: str, *, mode: Mode = "say") -> None:
        """Deliver `text` once `turn` agent turns of this run are done, exactly at that boundary (a scripted
        human's interjection). Turn 0 joins with the task."""
        self._inbox.after(turn, mode, human_text(text))

    def leave_escalated(self) -> None:
        """End the run now because nobody is there to settle its escalation (stop reason `escalation`).
        The escalation stays on record as unresolved."""
        self._cancel("escalation")

    def approve(self, request_id: str, *, actor: str = "user") -> None:
        """Let a waiting tool call go ahead."""
        self.decisions.decide(request_id, True, "", actor)

    def deny(self, request_id: str, reason: str = "", *, actor: str = "user") -> None:
        """Refuse a waiting tool call; the agent sees the reason as the tool's error."""
        self.decisions.decide(
            request_id, False, human_text(reason, "reason") if reason.strip() else "", actor
        )

    def resolve(
        self,
        escalation_id: str,
        *,
        choose: int | None = None,
        text: str | None = None,
        proceed: bool = False,
        actor: str = "user",
    ) -> None:
        """Settle an escalation: `choose` a position (1-based), write your own `text`, or `proceed` (the team
        continues as it was). Exactly one of the three."""
        self.decisions.resolve(escalation_id, choose=choose, text=text, proceed=proceed, actor=actor)

    def answer(self, question_id: str, text: str, *, actor: str = "user") -> None:
        """Answer a role's question; the role continues with `text`."""
        self.decisions.answer(question_id, text, actor)

    @property
    def pending_approvals(self) -> list[ApprovalRequestEvent]:
        return self.decisions.approvals

    @property
    def pending_escalations(self) -> list[EscalationEvent]:
        """Escalations waiting for a human; the run does not go on until each is resolved."""
        return self.decisions.escalations

    @property
    def pending_questions(self) -> list[QuestionEvent]:
        """Questions a role asked the human (ask_human) that nobody has answered yet."""
        return self.decisions.questions

    @property
    def unsaved(self) -> bool:
        """True once saving the conversation failed: from the failed write on, nothing of the run is kept."""
        return self._publisher.store_failed

    async def wait(self) -> RunResult:
        if self._task is not None:
            await asyncio.shield(self._task)
        assert self.result is not None
        return self.result

    def __aiter__(self) -> AsyncIterator[Event]:
        """The run's events: those shown so far, then each as it is shown, until the result. Each iteration
        is a subscriber of its own with a bounded buffer (see parley._publish)."""
        return self._publisher.subscribe()

    def on_store_write(self, listener: WriteListener) -> None:
        """Call `listener` after each write of this run to the store (start, end, items, error)."""
        self._publisher.write_listeners.append(listener)

    # -- what the engine and the conversation report --------------------------------------------

    def on_shown(self, listener: ShowListener) -> Callable[[], None]:
        """Tell `listener` of each event as it is shown, with its seq (see Publisher.on_shown); returns how to stop."""
        return self._publisher.on_shown(listener)

    def emit(self, event: Event) -> None:
        self._publisher.emit(event)

    @property
    def turns_done(self) -> int:
        return self.conversation.turn

    @property
    def cancel_reason(self) -> Cancel | None:
        return self._cancel_reason

    def live_turn(self) -> int:
        # Callbacks run as the manager works, which may be ahead of the stream we consume;
        # the guard counts turns in the manager's own order.
        return self._turn0 + self.guard.turns + 1

    def turn_of(self, source: str, *, start: bool = True) -> int:
        """The number of `source`'s turn in progress (parley/_turns.py)."""
        return self._turns.of(source, self.conversation.turn, start=start)

    def answered(self, source: str, text: str, kind: MessageKind) -> None:
        conv = self.conversation
        turn = self._turns.close(source, conv.turn)
        conv.turn = max(conv.turn, turn)
        if source not in self.guard.roles:
            self._verdicts += 1
        self.emit(MessageEvent(source=source, content=text, kind=kind, turn=turn))
        if self._spend.spent_by == source:  # the answer that spent the budget is shown: now end the run
            self._cancel("max_tokens")
        guard = self.guard
        if conv.pattern.parallel and source in guard.roles and guard.turns >= guard.cap:
            # The team checks its turn cap only once every role of a parallel step has answered: the others would
            # go on for as long as they take. End the run now, as the wall-clock limit does.
            self.end("max_turns", f"reached {guard.cap} turns")

    def answered_nothing(self, source: str) -> None:
        turn = self._turns.close(source, self.conversation.turn)
        self.emit(
            NoticeEvent(
                source=source,
                level="warning",
                turn=turn,
                content=(f"{source}'s model answered nothing again: not counted as a turn"),
            )
        )

    def checkpoint(self, state: Any, source: str) -> None:
        """The team's state after `source`'s message, stored with it (under that message's turn)."""
        pending = [m.text for m in self._inbox.waiting]
        self._publisher.checkpoint(Checkpoint(self.turn_of(source, start=False), dict(state), pending))

    def end(self, reason: StopReason, detail: str) -> None:
        """End the run now for `reason` (a limit the engine saw reached inside a turn)."""
        if self.result is None and self._cancel_reason not in FINAL:
            self._detail = detail
        self._cancel(reason)

    def picked(self, name: str, fallback: bool) -> None:
        self._engine.speaker = name
        content = f"{name} (the selector's answer named no role; next in order)" if fallback else name
        turn = self.live_turn()
        self.emit(SpeakerSelectedEvent(source="selector", content=content, fallback=fallback, turn=turn))

    def files_written(self, role: str, tool: str, paths: list[Path]) -> None:
        for path in paths:
            self.emit(FileEvent.written(role, tool, path, self.conversation.workspace, self.live_turn()))

    # -- internals -----------------------------------------------------------------------

    def _queue_human(self, text: str, mode: Literal["say", "interrupt"], author: str) -> None:
        if not text or not text.strip():
            raise ConfigError("an empty message cannot be sent: type something")
        text = human_text(text)
        if self.result is not None:
            raise RunStateError("this run has ended; use Conversation.say() to continue the conversation")
        self._inbox.put(mode, text, author)
        turn = self.conversation.turn
        self.emit(HumanQueuedEvent(source="user", content=text, mode=mode, author=author, turn=turn))

    def _cancel(self, reason: Cancel) -> None:
        if self.result is not None or self._cancel_reason in FINAL:
            return
        self._cancel_reason = reason
        self._engine.cancel()
        if self._waiting is not None:  # a human's decision the run waits on outside any turn
            self._waiting.cancel()

    def _store_failed(self, exc: BaseException) -> ErrorEvent:
        self._error = (
            type(exc).__name__,
            f"saving the conversation failed: {exc}; the run stopped, and what was not saved is not shown",
        )
        self.error = RunError(self._error[1], turn=self.conversation.turn, original=exc)
        self._cancel("error")
        return ErrorEvent(
            source="parley", content=self._error[1], error_type=self._error[0], turn=self.conversation.turn
        )

    # -- driving ---------------------------------------------------------------------------

    def begin(self) -> None:
        """Start driving the team (the conversation calls this once)."""
        self._task = asyncio.get_running_loop().create_task(
            self._drive(), name=f"parley-run-{self.conversation.team.name}"
        )

    async def _drive(self) -> None:
        conv = self.conversation
        spend = self._spend
        self._turn0 = conv.turn
        use_inbox(self._inbox)  # in the run's task: a scripted reply that holds for a human finds it
        spend.start(conv.limits.max_tokens)
        loop = asyncio.get_running_loop()
        self._publisher.start()
        timer = (
            loop.call_later(conv.limits.timeout_s, self._cancel, "timeout") if conv.limits.timeout_s else None
        )
        self.emit(
            RunStartedEvent(
                source="parley",
                content=self.task,
                team=conv.team.name,
                model=conv.model,
                pattern=conv.team.pattern,
                roles=conv.team.role_names,
                turn=conv.turn,
            )
        )
        for notice in conv.take_notices():
            self.emit(NoticeEvent(source="parley", content=notice, level="warning", turn=conv.turn))
        outcome = "error"
        try:
            outcome = await self._segments()
        except BaseException as exc:  # our own task was cancelled, or a bug: still end with a result
            self._error = (type(exc).__name__, redact_secrets(str(exc)) or type(exc).__name__)
            self.error = RunError(self._error[1], turn=conv.turn, original=exc)
            self._engine.drop()
            if not isinstance(exc, Exception):
                self._finish_now("error")
                raise
        finally:
            if timer is not None:
                timer.cancel()
            spend.stop_listening()
        await self._publisher.drain()  # the team may have run ahead of the store: let it catch up
        if self._publisher.store_failed:
            outcome = "error"
        self.result = self._result(outcome)
        self.result = await self._publisher.finish(self.result)

    def _finish_now(self, outcome: StopReason) -> None:
        """Our own task was cancelled: record the result without waiting for the store."""
        self.result = self._result(outcome)
        self._publisher.emit(self.result)
        self._publisher.cancel()

    async def _segments(self) -> StopReason:
        """Run the team until it stops for good: human messages and woken roles start a new segment."""
        while True:
            outcome = await self._segment()
            if outcome.end is SegmentEnd.TRIGGER:
                await self._engine.wake(self, self.task)
                if self._cancel_reason is None:
                    continue
                outcome = self._cancelled()
            if (
                outcome.end is SegmentEnd.STOPPED
                and outcome.reason == "max_turns"
                and self.conversation.pattern.escalates(self.conversation.team)
            ):
                if await self._escalate_disagreement():
                    continue
                outcome = (
                    self._cancelled() if self._cancel_reason is not None else Outcome(SegmentEnd.STOPPED)
                )
            if outcome.end is SegmentEnd.STOPPED:
                return outcome.reason
            if not self._inbox.ready(self.guard.turns):
                return "stopped"  # a message arrived too late to be delivered
            if outcome.end is SegmentEnd.INTERRUPTED:
                self._cancel_reason = None

    def _deliver_human(self) -> list[HumanMessage]:
        batch, turn = self._inbox.take(), self.conversation.turn
        for message in batch:
            self.emit(
                HumanMessageEvent(
                    source="user", content=message.text, mode=message.mode, author=message.author, turn=turn
                )
            )
        return batch

    async def _segment(self) -> Outcome:
        """One stretch of the team's work; returns why it ended."""
        engine, meter = self._engine, self.conversation.meter
        failures0 = len(meter.failures)
        self._turns.abandon_open()
        try:
            await engine.segment(self._deliver_human, self)
        except BaseException as exc:
            engine.drop()  # after any failure the team object is suspect; rebuild from the checkpoint
            if self._cancel_reason is not None and isinstance(exc, (asyncio.CancelledError, Exception)):
                return self._cancelled()
            if not isinstance(exc, Exception):
                raise
            if isinstance(exc, BudgetExceeded) or meter.exceeded():
                engine.abandon("max_tokens", self)
                return Outcome(SegmentEnd.STOPPED, "max_tokens")
            return self._failed(exc, meter.failures[failures0:])
        if self._cancel_reason is not None:
            engine.drop()
            return self._cancelled()
        reason = self.guard.reason
        if reason == "interjection":
            return Outcome(SegmentEnd.HUMAN)
        if reason == "trigger":
            return Outcome(SegmentEnd.TRIGGER)
        return Outcome(SegmentEnd.STOPPED, reason or "completed")

    def _cancelled(self) -> Outcome:
        reason = self._cancel_reason or "stopped"
        self._engine.abandon(reason, self)
        if reason == "interrupt":
            return Outcome(SegmentEnd.INTERRUPTED)
        return Outcome(SegmentEnd.STOPPED, reason)

    def _failed(self, exc: Exception, failures: Sequence[Any]) -> Outcome:
        self._error = self._engine.failure(exc, failures)
        source = failures[-1].source if failures else (self._engine.speaker or "parley")
        original = getattr(failures[-1], "error", None) if failures else None  # the model's own exception
        self.error = RunError(
            self._error[1],
            role=source if source != "parley" else None,
            turn=self.conversation.turn + 1,
            original=original or exc,
            error_type=self._error[0],
        )
        self.emit(
            ErrorEvent(
                source=source,
                content=self._error[1],
                error_type=self._error[0],
                turn=self.conversation.turn + 1,
            )
        )
        return Outcome(SegmentEnd.STOPPED, "error")

    async def _escalate_disagreement(self) -> bool:
        """A loop that ran out of rounds without agreement: each role's last word goes to a human. True when
        the human lets the team go on."""
        conv = self.conversation
        positions = last_positions(self.events, [r.name for r in conv.team.scheduled])
        rounds = conv.pattern.rounds(conv.team)
        event, decided = self.decisions.open_escalation(
            "disagreement",
            "parley",
            f"No agreement after {rounds} rounds: pick a position, write the answer, "
            f"or let the team go on for {rounds} more",
            positions,
        )
        self.emit(event)
        if self._cancel_reason is not None:
            return False
        self._waiting = decided
        try:
            answer = await decided
        except asyncio.CancelledError:
            if self._cancel_reason is None:
                raise
            return False
        finally:
            self._waiting = None
        if answer.decision == "continue":
            self.guard.extra_turns += rounds * len(conv.team.scheduled)
            return True
        self._settled = (answer.content, f"settled by {answer.actor} after {rounds} rounds without agreement")
        return False

    def _result(self, outcome: StopReason) -> RunResult:
        conv = self.conversation
        carried = self._inbox.carry_over()
        detail = stop_detail(
            outcome,
            conv.limits,
            settled=self._settled[1] if self._settled else None,
            ended=self._detail or self.guard.detail,
            used_tokens=self._spend.prompt_tokens + self._spend.completion_tokens,
            error=self._error,
        )
        left_open = self.decisions.close(outcome)
        if outcome == "escalation" and left_open:
            detail = left_open
        spend = self._spend
        spend.close()
        return RunResult(
            source="parley",
            stop_reason=outcome,
            turns=self.guard.turns + self._verdicts,
            detail=detail,
            prompt_tokens=spend.prompt_tokens,
            completion_tokens=spend.completion_tokens,
            cost_usd=spend.cost_usd,
            turn=conv.turn,
            undelivered=[m.text for m in carried],
            content=self._settled[0] if self._settled else final_text(self.events),
        )
