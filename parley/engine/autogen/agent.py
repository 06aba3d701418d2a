"""parley's agents: AutoGen's AssistantAgent plus validation, and the notices they put in the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Literal, Protocol

from autogen_agentchat.base import Response
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    HandoffMessage,
    ModelClientStreamingChunkEvent,
    TextMessage,
    ToolCallExecutionEvent,
)
from autogen_core import CancellationToken

from ..._validate import Validator
from ...events import EscalationResolvedEvent, Position, ValidationEvent
from ...host import EscalationHost
from .direct import DirectChunks
from .internals import CheckedToolCalls
from .turns import mark_reflection, tool_step

__all__ = ["AgentHost", "ParleyAgent", "ParleyNotice", "escalate", "shown_now"]


class ParleyNotice(BaseAgentEvent):
    """A parley event raised inside an agent's turn, carried in AutoGen's stream so it keeps its place
    among the turn's chunks and tool calls. Never part of the message thread, so never saved in state."""

    event: Any
    type: Literal["ParleyNotice"] = "ParleyNotice"

    def to_text(self) -> str:
        return str(getattr(self.event, "content", ""))


class AgentHost(EscalationHost, Protocol):
    """What a parley agent reports to: the host's escalations and triggers, and each answer it gives (an
    AutoGen message, so this part stays in the engine)."""

    def spoke(self, message: BaseChatMessage) -> None: ...


def shown_now(source: str, event: Any) -> list[ParleyNotice]:
    """A notice to yield from inside a tool, followed by a blank one: AutoGen's stream workbench passes a
    streamed item on only when the next one arrives, and the run must see this one while it waits."""
    return [ParleyNotice(source=source, event=event), ParleyNotice(source=source, event=None)]


async def escalate(
    host: AgentHost,
    token: CancellationToken,
    *,
    kind: str,
    source: str,
    content: str,
    positions: list[Position],
) -> AsyncGenerator[ParleyNotice | EscalationResolvedEvent, None]:
    """Raise an escalation, then wait for the human. Yields the notice to put in the stream, then the decision."""
    event, decided = host.open_escalation(kind, source, content, positions)
    for notice in shown_now(source, event):  # a worker's escalation runs inside its manager's tool call
        yield notice
    waiting = asyncio.ensure_future(decided)
    token.link_future(waiting)
    yield await waiting


class ParleyAgent(CheckedToolCalls):
    """An AssistantAgent whose answers must pass its role's validation rules.

    A failing answer goes back to the role with what is wrong (up to `retries` times); after that
    the run escalates to a human, who picks the answer, writes one, or lets the team continue.
    """

    def __init__(
        self, *args: Any, validator: Validator | None = None, host: AgentHost | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._validator = validator
        self._host = host
        self.direct: DirectChunks | None = None
        """Where its streamed pieces go past AutoGen's runtime (a member of the team the run consumes; see direct)."""

    async def on_messages_stream(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response, None]:
        async for item in self._answer(messages, cancellation_token):
            if (
                self._host is not None
                and isinstance(item, ToolCallExecutionEvent)
                and any(r.is_error for r in item.content)
            ):
                self._host.fire("tool failed")
            if isinstance(item, Response):
                mark_reflection(item)
                if self._host is not None:
                    self._host.spoke(item.chat_message)
            direct = self.direct
            if direct is not None:
                if isinstance(item, ModelClientStreamingChunkEvent) and direct.take(item):
                    continue
                direct.sent(item.chat_message.id if isinstance(item, Response) else item.id)
            yield item

    async def _answer(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response, None]:
        validator = self._validator
        if validator is None or self._host is None:
            async for item in super().on_messages_stream(messages, cancellation_token):
                yield item
            return
        attempt = 1
        while True:
            response: Response | None = None
            async for item in super().on_messages_stream(messages, cancellation_token):
                if isinstance(item, Response):
                    response = item
                else:
                    yield item
            assert response is not None
            answer = mark_reflection(response).chat_message
            if isinstance(answer, HandoffMessage) or tool_step(answer):
                yield response  # tool work (its results, or a reflection on them) and handoffs are not the role's answer
                return
            text = answer.to_model_text()
            # Off the event loop: a team's pattern may take up to its time limit on this answer, and meanwhile
            # the run's timeout, Stop and other conversations keep going.
            problems = await asyncio.to_thread(validator.problems, text)
            yield ParleyNotice(
                source=self.name,
                event=ValidationEvent(
                    source=self.name,
                    content=text,
                    passed=not problems,
                    attempt=attempt,
                    retries=validator.retries,
                    problems=problems,
                ),
            )
            if not problems:
                yield response
                return
            self._host.fire("validation failed")
            if attempt <= validator.retries:
                messages = [TextMessage(source="parley", content=validator.correction(problems, attempt))]
                attempt += 1
                continue
            async for item in self._escalate(response, text, problems, validator.retries, cancellation_token):
                yield item
            return

    async def _escalate(
        self,
        response: Response,
        text: str,
        problems: list[str],
        retries: int,
        cancellation_token: CancellationToken,
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response, None]:
        """Corrections did not help: a human picks the answer, writes one, or lets it stand."""
        assert self._host is not None
        summary = (
            f"{self.name}'s answer still fails its checks after {retries} "
            f"correction{'s' if retries != 1 else ''}: " + "; ".join(problems)
        )
        decision: EscalationResolvedEvent | None = None
        async for step in escalate(
            self._host,
            cancellation_token,
            kind="validation",
            source=self.name,
            content=summary,
            positions=[Position(who=self.name, text=text)],
        ):
            if isinstance(step, ParleyNotice):
                yield step
            else:
                decision = step
        assert decision is not None
        final = text if decision.decision == "continue" else decision.content
        yield Response(
            chat_message=TextMessage(
                source=self.name, content=final, models_usage=response.chat_message.models_usage
            ),
            inner_messages=response.inner_messages,
        )
