"""Model context that keeps the task plus a recent window, so small models stay within their context."""

from __future__ import annotations

from autogen_core.model_context import UnboundedChatCompletionContext
from autogen_core.models import FunctionExecutionResultMessage, LLMMessage, UserMessage


class TaskWindowContext(UnboundedChatCompletionContext):
    """The first user message (the task) and the last `window` messages."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self._window = window

    async def get_messages(self) -> list[LLMMessage]:
        messages = self._messages
        if len(messages) <= self._window + 1:
            return list(messages)
        head = [messages[0]] if isinstance(messages[0], UserMessage) else []
        tail = list(messages[-self._window :])
        # A tool result without the call that produced it is rejected by OpenAI-style APIs.
        while tail and isinstance(tail[0], FunctionExecutionResultMessage):
            tail.pop(0)
        return head + tail
