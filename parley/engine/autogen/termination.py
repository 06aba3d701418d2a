"""One termination condition for every run: stop text, turn cap, token budget, loops, a human or a woken role
waiting. It only decides when the team's stream ends; what happens next is the run's business."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from autogen_agentchat.base import TerminatedException, TerminationCondition
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    HandoffMessage,
    StopMessage,
    TextMessage,
    ToolCallSummaryMessage,
)

from ...inbox import HumanInbox
from ...models import Meter
from ...spec import TerminationSpec
from .. import Ending, Triggers
from .turns import tool_step

__all__ = ["RunGuard", "empty_reply"]


def empty_reply(m: BaseChatMessage) -> bool:
    """A role's answer with nothing in it (its model answered nothing, even when asked again): not a turn."""
    return isinstance(m, TextMessage) and not m.content.strip()


class RunGuard(TerminationCondition):
    """Ends a team's `run_stream` for whichever reason comes first.

    Its counters belong to the run, not to AutoGen: the manager resets the condition each
    time it fires, but a run spans several `run_stream` calls (one per interjection).
    """

    def __init__(
        self,
        limits: TerminationSpec,
        roles: Sequence[str],
        meter: Meter,
        *,
        inbox: HumanInbox,
        triggers: Triggers,
        on_answer: Callable[[str], None] = lambda role: None,
    ) -> None:
        self.limits = limits
        self.roles = set(roles)
        self.stop_from = set(limits.stop_from) or self.roles
        self.meter = meter
        self.inbox = inbox
        self.triggers = triggers
        self.on_answer = on_answer
        """Called with the role's name each time a role gives an answer (not tool work, not an empty reply)."""
        self.turns = 0
        self.extra_turns = 0
        """Turns granted beyond limits.max_turns (a human let a disagreeing loop go on)."""
        self.reason: Ending | None = None
        self.detail = ""
        self._fired = False
        self._seen: set[str] = set()
        self._said: dict[str, list[str]] = {}
        self._pending: tuple[Ending, str] | None = None

    @property
    def terminated(self) -> bool:
        return self._fired

    @property
    def cap(self) -> int:
        """The turn cap now (the limit plus any turns a human granted)."""
        return self.limits.max_turns + self.extra_turns

    def new_run(self) -> None:
        self.turns = 0
        self._said = {}
        self._pending = None

    def begin_segment(self) -> None:
        """Called right before each `run_stream`: forget the last firing."""
        self.reason = None
        self.detail = ""
        self._fired = False

    def _fire(self, reason: Ending, detail: str) -> StopMessage:
        self.reason, self.detail, self._fired = reason, detail, True
        return StopMessage(content=detail, source="parley")

    def observe(self, m: BaseChatMessage) -> None:
        """Count a role's message as it is produced. Agents report their own answers here, because a
        parallel step (fan-out, votes) shows the manager only the last answer of the step."""
        if m.id in self._seen or m.source not in self.roles:
            return
        self._seen.add(m.id)
        self._check_repeats(m)
        if empty_reply(m):
            return  # not a turn (the run says so); answering nothing over and over is a loop, stopped above
        self.turns += 1
        if not tool_step(
            m
        ):  # a step of tool work (its results, or a reflection on them) is not the role's answer
            self.on_answer(m.source)
        if self._pending is None:
            self._pending = self._ending(m)

    def _check_repeats(self, m: BaseChatMessage) -> None:
        said = " ".join(m.to_model_text().lower().split())
        history = self._said.setdefault(m.source, [])
        history.append(said)
        repeats = self.limits.max_repeats
        if (
            self._pending is None
            and len(history) >= repeats
            and len(set(history[-repeats:])) == 1
            and not tool_step(m)
        ):
            what = "answered nothing" if not said else "said the same thing"
            self._pending = ("loop", f"loop: {m.source} {what} {repeats} times in a row")

    def _ending(self, m: BaseChatMessage) -> tuple[Ending, str] | None:
        """The reason this message ends the run, if it does."""
        stop_text = self.limits.stop_text
        if isinstance(m, HandoffMessage) and m.target == "user":
            return ("handoff", f"{m.source} handed the conversation to the human")
        # Tool output is data: a stop word inside a tool result never ends the run.
        if (
            stop_text
            and m.source in self.stop_from
            and not isinstance(m, ToolCallSummaryMessage)
            and stop_text in m.to_model_text()
        ):
            return ("stop_text", f"{m.source} said {stop_text}")
        return None

    async def __call__(self, messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> StopMessage | None:
        if self._fired:
            raise TerminatedException("the run has already stopped")
        for m in messages:
            if isinstance(m, BaseChatMessage):
                self.observe(m)
        if self._pending is not None:
            reason, detail = self._pending
            self._pending = None
            return self._fire(reason, detail)
        if self.meter.exceeded():
            return self._fire(
                "max_tokens", f"token budget of {self.meter.budget} reached ({self.meter.total_tokens} used)"
            )
        if self.turns >= self.cap:
            return self._fire("max_turns", f"reached {self.cap} turns")
        if self.inbox.ready(self.turns):
            return self._fire("interjection", "a human message is waiting")
        if self.triggers.pending:
            return self._fire("trigger", ", ".join(f"{r} woken by {t}" for r, t in self.triggers.pending))
        return None

    async def reset(self) -> None:
        # AutoGen resets after every firing; the run reads `reason` afterwards, so keep it.
        self._fired = False
