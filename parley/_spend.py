"""What one run spends: its share of the conversation's meter, its token budget, and the notices about both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ._text import redact_secrets
from .events import Event, NoticeEvent, UsageEvent
from .models import CallRecord, Meter, Retry

__all__ = ["BUDGET_GRACE_S", "RunSpend"]

BUDGET_GRACE_S = 0.5
"""Once the token budget is spent, how long the answer whose model call spent it gets to arrive before the run is
cancelled anyway (that call may have asked for a tool, or be the selector's, and bring no answer)."""


class RunSpend:
    """Listens to the meter while a run drives its team: each call's usage becomes a UsageEvent with the run's
    totals so far, each retry a notice, and a spent budget ends the run (see `budget_spent`)."""

    def __init__(
        self,
        meter: Meter,
        emit: Callable[[Event], None],
        next_turn: Callable[[], int],
        live_turn: Callable[[], int],
        end: Callable[[], None],
    ) -> None:
        self._meter = meter
        self._emit = emit
        self._next_turn = next_turn
        """The turn the next stored message will have (what a usage event is numbered with)."""
        self._live_turn = live_turn
        self._end = end
        """Ends the run for its token budget."""
        self._p0 = self._c0 = 0
        self.cost_usd: float | None = 0.0
        """What this run's model calls cost, added up as each is recorded (None once one has no known price)."""
        self.spent_by: str | None = None
        """Whose model call spent the token budget, once one has."""
        self._timer: asyncio.TimerHandle | None = None
        self.open = False
        """Whether usage still counts (the run has not produced its result)."""

    @property
    def prompt_tokens(self) -> int:
        return self._meter.prompt_tokens - self._p0

    @property
    def completion_tokens(self) -> int:
        return self._meter.completion_tokens - self._c0

    def start(self, max_tokens: int | None) -> None:
        meter = self._meter
        self._p0, self._c0 = meter.prompt_tokens, meter.completion_tokens
        meter.budget = meter.total_tokens + max_tokens if max_tokens else None
        meter.listeners.append(self._on_usage)
        meter.retry_listeners.append(self._on_retry)
        self.open = True

    def stop_listening(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._meter.listeners.remove(self._on_usage)
        self._meter.retry_listeners.remove(self._on_retry)

    def close(self) -> None:
        """The run has its result: no budget any more, and nothing it spends changes the outcome."""
        self.open = False
        self._meter.budget = None

    def _on_usage(self, rec: CallRecord) -> None:
        if self.cost_usd is not None:
            self.cost_usd = None if rec.cost_usd is None else self.cost_usd + rec.cost_usd
        self._emit(
            UsageEvent(
                source=rec.source,
                model=rec.model,
                prompt_tokens=rec.prompt_tokens,
                completion_tokens=rec.completion_tokens,
                total_prompt_tokens=self.prompt_tokens,
                total_completion_tokens=self.completion_tokens,
                cost_usd=self.cost_usd,
                turn=self._next_turn(),
                estimated=rec.estimated,
                cancelled=rec.cancelled,
                reflection=rec.reflection,
                latency_s=rec.latency_s,
                finish_reason=rec.finish_reason,
            )
        )
        if self.spent_by is None and self._meter.exceeded() and self.open:
            self.budget_spent(rec)

    def budget_spent(self, rec: CallRecord) -> None:
        """The meter (which sees every call, the selector's and every parallel branch's) passed the budget. The
        team's own check runs only when every branch of a parallel step has answered, which may be long after, so
        the run is cancelled like the wall-clock limit cancels it: every call in flight is abandoned. The answer
        whose call spent the budget is shown first (the run ends when it is); a call with no answer to wait for,
        or an answer that does not come, does not hold the run up for more than BUDGET_GRACE_S."""
        self.spent_by = rec.source
        if rec.cancelled:
            self._end()
            return
        self._timer = asyncio.get_running_loop().call_later(BUDGET_GRACE_S, self._end)

    def _on_retry(self, note: Retry) -> None:
        if note.empty:
            content = f"{note.source}'s model answered nothing; asking it once more"
        else:
            content = (
                f"{note.source}'s model call failed ({redact_secrets(note.error)}); retrying in "
                f"{note.delay_s:.1f} s (attempt {note.attempt + 1} of {note.attempts})"
            )
        self._emit(NoticeEvent(source=note.source, level="warning", turn=self._live_turn(), content=content))
