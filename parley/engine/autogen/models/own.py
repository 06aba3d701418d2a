"""What parley's own clients (the scripted, embedded and function models) share besides answering."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autogen_core.models import ChatCompletionClient, LLMMessage, ModelInfo, RequestUsage
from autogen_core.tools import Tool, ToolSchema

from ....models import Traits, count_messages


class OwnClient(ChatCompletionClient):
    """Usage totals, token counting and model info for a client that needs no connection to close."""

    info: ModelInfo
    traits = Traits()
    """What model info cannot say about this client (see parley.models.Traits)."""
    context_tokens = 1_000_000
    """For AutoGen's `remaining_tokens`; the meter checks a request against `window_tokens` only."""
    window_tokens: int | None = None
    """The model's context window, when the client knows it (the embedded model's request slot)."""

    def __init__(self) -> None:
        self.usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
        """Tokens the model reported over every call (none for the scripted and function models: the meter
        counts theirs)."""

    def add_usage(self, usage: RequestUsage) -> None:
        self.usage = RequestUsage(
            prompt_tokens=self.usage.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens + usage.completion_tokens,
        )

    async def close(self) -> None:
        return None

    def actual_usage(self) -> RequestUsage:
        return self.usage

    def total_usage(self) -> RequestUsage:
        return self.usage

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()) -> int:
        return count_messages(messages, tools)

    def remaining_tokens(
        self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()
    ) -> int:
        return self.context_tokens - self.count_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> Any:
        return {k: self.info[k] for k in ("vision", "function_calling", "json_output")}  # type: ignore[literal-required]

    @property
    def model_info(self) -> ModelInfo:
        return self.info
