"""The host: what a running conversation offers its agents and tools, whatever engine runs them.

`Conversation` is the host. The engine's tools and agents (see parley.engine.autogen) reach the conversation only
through this protocol, and nothing in it is an engine type: a decision the human must take (an approval, an
answer to a question, the end of an escalation) comes back as an awaitable, and the engine links its own
cancellation to it (a stopped run abandons the wait).
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

from .events import AnswerEvent, EscalationEvent, EscalationResolvedEvent, Position, QuestionEvent
from .tools import RunContext

__all__ = ["ASK_HUMAN", "ApprovalHost", "EscalationHost", "Host", "QuestionHost", "ToolHost"]

ASK_HUMAN = "ask_human"
"""The built-in capability a team file grants (`tools: [ask_human]`) for a role to ask the human a question."""


class ToolHost(Protocol):
    """What every tool call reaches: the role's run context, and where the files it wrote are reported."""

    def context_for(self, role: str) -> RunContext:
        """The run context (workspace, shared notes, ids) of `role`'s tool calls."""
        ...

    def files_written(self, role: str, tool: str, paths: list[Path]) -> None:
        """`role`'s call of `tool` created or changed `paths` (absolute, inside the workspace)."""
        ...


class ApprovalHost(ToolHost, Protocol):
    """A tool host that can ask for a decision on a call that needs approval."""

    def request_approval(
        self,
        role: str,
        tool: str,
        args: dict[str, Any],
        call_id: str | None,
    ) -> Awaitable[tuple[bool, str]]:
        """Ask the human (or a standing rule) whether `role` may call `tool` with `args`; the awaitable ends
        with (approved, reason). Never raises for want of a run: with no run in progress it ends denied."""
        ...


class QuestionHost(Protocol):
    """What the `ask_human` tool reaches."""

    def open_question(self, source: str, question: str) -> tuple[QuestionEvent, Awaitable[AnswerEvent]]:
        """Put `question` to the human; returns the event to show now and the awaitable answer (the team's
        `default_answer`, marked `timed_out`, when its question time-out passes first)."""
        ...


class EscalationHost(Protocol):
    """What an agent reaches when its team cannot settle something alone."""

    def fire(self, trigger: str) -> None:
        """Something happened that may wake event-driven roles (after the current turn)."""
        ...

    def open_escalation(
        self,
        kind: str,
        source: str,
        content: str,
        positions: list[Position],
    ) -> tuple[EscalationEvent, Awaitable[EscalationResolvedEvent]]:
        """Ask the human to settle it; returns the event to show now and the awaitable decision."""
        ...


class Host(ApprovalHost, QuestionHost, EscalationHost, Protocol):
    """Everything the engine's agents and tools reach while a conversation runs them."""
