"""The scripted model's client: a ChatCompletionClient answering one role (or the selector, or the summariser)
from a parley.models.ScriptedModel, in process."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncGenerator, Awaitable, Mapping, Sequence
from typing import Any

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import CreateResult, FunctionExecutionResultMessage, LLMMessage, ModelInfo
from autogen_core.tools import Tool, ToolSchema

from ....inbox import current_inbox
from ....models import (
    STREAM_EVERY_S,
    CallsReply,
    HeldReply,
    Reply,
    ScriptCall,
    ScriptedModel,
    ToolReply,
    Traits,
    reply_text,
)
from .own import OwnClient

SCRIPTED_INFO: ModelInfo = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    # Its text is the script's: a pick is never bound to a JSON schema (parsed instead, as the script says it).
    "structured_output": False,
    "multiple_system_messages": True,
}


def reflection_answer(messages: Sequence[LLMMessage], tools: Sequence[Any]) -> str | None:
    """The answer to AutoGen's reflection call (tool results just in, no tools offered), which takes no script
    reply: the results' text joined by newlines, what a ToolCallSummaryMessage carries (the replay server
    answers the same). None for any other request."""
    if tools or not messages or not isinstance(messages[-1], FunctionExecutionResultMessage):
        return None
    return "\n".join(r.content for r in messages[-1].content)


class ScriptedClient(OwnClient):
    """A ChatCompletionClient answering from a script for one role (or the selector)."""

    info = SCRIPTED_INFO
    traits = Traits(reasks=False, reflects=False)
    """Every call takes the script's next reply, so a vote is never asked for twice. Reflection stays off until the
    conversation's tool turns are meant to end in the role's answer rather than the tool summary (the client
    answers a reflection call without taking a script reply either way: see reflection_answer)."""

    def __init__(self, model: ScriptedModel, who: str) -> None:
        super().__init__()
        self.script = model
        self.who = who

    def _result(self, reply: Reply) -> CreateResult:
        if isinstance(reply, (ToolReply, CallsReply)):
            calls = [
                FunctionCall(
                    id=r.id if r.id is not None else f"call_{uuid.uuid4().hex[:12]}",
                    name=r.tool,
                    arguments=r.raw_args if r.raw_args is not None else json.dumps(r.args),
                )
                for r in (reply.calls if isinstance(reply, CallsReply) else [reply])
            ]
            return CreateResult(finish_reason="function_calls", content=calls, usage=self.usage, cached=False)
        return CreateResult(finish_reason="stop", content=reply_text(reply), usage=self.usage, cached=False)

    def _answer(
        self, messages: Sequence[LLMMessage], tools: Sequence[Any]
    ) -> tuple[CreateResult, float, bool]:
        """The result for this request, the seconds it takes (the script's `delay_s`; none for a reflection) and
        whether it holds until a human speaks (a HeldReply)."""
        reflected = reflection_answer(messages, tools)
        if reflected is not None:
            return (
                CreateResult(finish_reason="stop", content=reflected, usage=self.usage, cached=False),
                0.0,
                False,
            )
        reply = self.script.next_reply(self.who, messages)
        self.script.calls.append(ScriptCall(self.who, list(messages)))
        return self._result(reply), self.script.script.delay_for(self.who), isinstance(reply, HeldReply)

    @staticmethod
    async def _hold(token: CancellationToken | None) -> None:
        """Wait until a human message reaches the run's inbox; a cut-short turn cancels the wait."""
        inbox = current_inbox()
        if inbox is not None:
            await _cancellable(inbox.next_message(), token)

    async def _pause(self, seconds: float, token: CancellationToken | None) -> None:
        if seconds > 0:
            await _cancellable(asyncio.sleep(seconds), token)

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        result, delay, held = self._answer(messages, tools)
        if held:
            await self._hold(cancellation_token)
        await self._pause(delay, cancellation_token)
        return result

    async def create_stream(  # type: ignore[override]
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        result, delay, held = self._answer(messages, tools)
        if isinstance(result.content, str) and result.content:
            chunks = re.findall(r"\S+\s*|\s+", result.content)
            each = delay / len(chunks)
            for i, chunk in enumerate(chunks):
                holds = held and i == 0
                # A held first piece comes later than STREAM_EVERY_S, so metered.py passes it on at once.
                await self._pause(max(each, 2 * STREAM_EVERY_S) if holds else each, cancellation_token)
                yield chunk
                if holds:  # the turn is on the page (its first word): now it waits for the human
                    await self._hold(cancellation_token)
        else:
            await self._pause(delay, cancellation_token)
        yield result


async def _cancellable(step: Awaitable[None], token: CancellationToken | None) -> None:
    """Await `step`; cancelling `token` (a turn cut short) cancels it."""
    fut = asyncio.ensure_future(step)
    if token is not None:
        token.link_future(fut)
    await fut
