"""A function model's client: AutoGen's messages become parley's own (parley.models.Message), the function's
answer becomes AutoGen's CreateResult."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    AssistantMessage,
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelInfo,
    SystemMessage,
)
from autogen_core.tools import Tool, ToolSchema

from ....models import FunctionModel, Message, ModelReply, ModelRequest, ToolCall, ToolResult
from .own import OwnClient


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(part if isinstance(part, str) else "[image]" for part in content)


def _arguments(raw: str) -> Mapping[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return {"arguments": raw}
    return value if isinstance(value, dict) else {"arguments": value}


def as_message(m: LLMMessage) -> Message:
    """One of AutoGen's messages as parley's."""
    if isinstance(m, SystemMessage):
        return Message(role="system", speaker="system", text=m.content)
    if isinstance(m, FunctionExecutionResultMessage):
        results = tuple(
            ToolResult(call_id=r.call_id, name=r.name, content=r.content, is_error=bool(r.is_error))
            for r in m.content
        )
        return Message(role="tool", speaker="tool", tool_results=results)
    if isinstance(m, AssistantMessage):
        if isinstance(m.content, str):
            return Message(role="assistant", speaker=m.source, text=m.content)
        calls = tuple(ToolCall(id=c.id, name=c.name, arguments=_arguments(c.arguments)) for c in m.content)
        return Message(role="assistant", speaker=m.source, text=m.thought or "", tool_calls=calls)
    return Message(role="user", speaker=m.source, text=_text(m.content))


def _tool_name(tool: Tool | ToolSchema) -> str:
    return tool.name if isinstance(tool, Tool) else str(tool["name"])


class FunctionClient(OwnClient):
    """A ChatCompletionClient answered by a FunctionModel for one role (or the selector, or the summariser)."""

    def __init__(self, model: FunctionModel, who: str) -> None:
        super().__init__()
        self.function = model
        self.who = who
        self.info: ModelInfo = {
            "vision": model.vision,
            "function_calling": model.tools,
            "json_output": True,
            "family": "unknown",
            "structured_output": False,
            "multiple_system_messages": True,
        }

    async def _answer(
        self, messages: Sequence[LLMMessage], tools: Sequence[Tool | ToolSchema]
    ) -> CreateResult:
        request = ModelRequest(
            who=self.who,
            messages=tuple(as_message(m) for m in messages),
            tools=tuple(_tool_name(t) for t in tools),
        )
        reply: ModelReply = await self.function.answer(request)
        if not reply.tool_calls:
            return CreateResult(finish_reason="stop", content=reply.text, usage=self.usage, cached=False)
        calls = [
            FunctionCall(
                id=c.id or f"call_{uuid.uuid4().hex[:12]}",
                name=c.name,
                arguments=json.dumps(dict(c.arguments), default=str),
            )
            for c in reply.tool_calls
        ]
        return CreateResult(
            finish_reason="function_calls",
            content=calls,
            usage=self.usage,
            cached=False,
            thought=reply.text or None,
        )

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
        return await self._answer(messages, tools)

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
        result = await self._answer(messages, tools)
        if isinstance(result.content, str) and result.content:
            yield result.content
        yield result
