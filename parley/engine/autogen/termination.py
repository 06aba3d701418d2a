"""One termination condition for every run: stop text, turn cap, token budget, interjection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from autogen_agentchat.base import TerminatedException, TerminationCondition
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    HandoffMessage,
    StopMessage,
    TextMessage,
    ToolCallExecutionEvent,
    ToolCallSummaryMessage,
)

from ...models import Meter
from ...spec import TerminationSpec
from .turns import tool_step


def empty_reply(m: BaseChatMessage) -> bool:
    """A role's answer with nothing in it (its model answered nothing, even when asked again): not a turn."""
    return isinstance(m, TextMessage) and not m.content.strip()


class RunGuard(TerminationCondition):
    """Ends a team's `run_stream` for whichever reason comes first.

    Its counters belong to the run, not to AutoGen: the manager resets the condition each
    time it fires, but a run spans several `run_stream` calls (one per interjection).
    """

    def __init__(self, limits: TerminationSpec, roles: Sequence[str], meter: Meter, *,
                 triggers: Mapping[str, Sequence[str]] | None = None, scheduled: Sequence[str] = ()) -> None:
        self.limits = limits
        self.triggers = dict(triggers or {})
        """What wakes event-driven roles: trigger (`tool failed`, `ROLE finished`...) to roles."""
        self.stages = set(scheduled) or set(roles)
        """The roles the manager schedules: each answer of one finishes a stage (the `stage finished` trigger)."""
        self.wake: list[tuple[str, str]] = []
        """(role, trigger) to run after the current turn."""
        self.scheduled: dict[int, list[tuple[str, str]]] = {}
        """Human messages to deliver once this many turns are done (an evaluation's scripted human)."""
        self.due: list[tuple[str, str]] = []
        """Human messages whose turn has come, to deliver at the next boundary."""
        self.roles = set(roles)
        self.stop_from = set(limits.stop_from) or self.roles
        self.meter = meter
        self.turns = 0
        self.extra_turns = 0
        """Turns granted beyond limits.max_turns (a human let a disagreeing loop go on)."""
        self.reason: str | None = None
        self.detail = ""
        self.interject = False
        self.handed_back: str | None = None
        """The role that handed the conversation to the human (swarm), to be handed back to."""
        self._fired = False
        self._seen: set[str] = set()
        self._said: dict[str, list[str]] = {}
        self._pending: tuple[str, str] | None = None

    @property
    def terminated(self) -> bool:
        return self._fired

    def new_run(self) -> None:
        self.turns = 0
        self._said = {}
        self._pending = None
        self.scheduled = {}
        self.due = []

    def begin_segment(self) -> None:
        """Called right before each `run_stream`: forget the last firing and any stale interjection."""
        self.reason = None
        self.detail = ""
        self.interject = False
        self._fired = False

    def wake_on(self, trigger: str) -> None:
        for role in self.triggers.get(trigger, ()):
            if all(r != role for r, _ in self.wake):
                self.wake.append((role, trigger))

    def _fire(self, reason: str, detail: str) -> StopMessage:
        self.reason, self.detail, self._fired = reason, detail, True
        return StopMessage(content=detail, source="parley")

    def observe(self, m: BaseChatMessage) -> None:
        """Count a role's message as it is produced. Agents report their own answers here, because a
        parallel step (fan-out, votes) shows the manager only the last answer of the step."""
        if m.id in self._seen or m.source not in self.roles:
            return
        self._seen.add(m.id)
        said = " ".join(m.to_model_text().lower().split())
        history = self._said.setdefault(m.source, [])
        history.append(said)
        repeats = self.limits.max_repeats
        if (self._pending is None and len(history) >= repeats and len(set(history[-repeats:])) == 1
                and not tool_step(m)):
            what = "answered nothing" if not said else "said the same thing"
            self._pending = ("loop", f"loop: {m.source} {what} {repeats} times in a row")
        if empty_reply(m):
            return  # not a turn (the run says so); answering nothing over and over is a loop, stopped above
        self.turns += 1
        if not tool_step(m):  # a step of tool work (its results, or a reflection on them) is not the role's answer
            self.wake_on(f"{m.source} finished")
            if m.source in self.stages:
                self.wake_on("stage finished")
        if self._pending is not None:
            return
        stop_text = self.limits.stop_text
        if isinstance(m, HandoffMessage) and m.target == "user":
            self.handed_back = m.source
            self._pending = ("handoff", f"{m.source} handed the conversation to the human")
        # Tool output is data: a stop word inside a tool result never ends the run.
        elif (stop_text and m.source in self.stop_from and not isinstance(m, ToolCallSummaryMessage)
              and stop_text in m.to_model_text()):
            self._pending = ("stop_text", f"{m.source} said {stop_text}")

    async def __call__(self, messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> StopMessage | None:
        if self._fired:
            raise TerminatedException("the run has already stopped")
        for m in messages:
            if isinstance(m, ToolCallExecutionEvent) and any(r.is_error for r in m.content):
                self.wake_on("tool failed")
            if isinstance(m, BaseChatMessage):
                self.observe(m)
        if self._pending is not None:
            reason, detail = self._pending
            self._pending = None
            return self._fire(reason, detail)
        if self.meter.exceeded():
            return self._fire("max_tokens", f"token budget of {self.meter.budget} reached ({self.meter.total_tokens} used)")
        if self.turns >= self.limits.max_turns + self.extra_turns:
            return self._fire("max_turns", f"reached {self.limits.max_turns + self.extra_turns} turns")
        for after in sorted(k for k in self.scheduled if k <= self.turns):
            self.due += self.scheduled.pop(after)
        if self.interject or self.due:
            return self._fire("interjection", "a human message is waiting")
        if self.wake:
            return self._fire("trigger", ", ".join(f"{r} woken by {t}" for r, t in self.wake))
        return None

    async def reset(self) -> None:
        # AutoGen resets after every firing; the run reads `reason` afterwards, so keep it.
        self._fired = False
