"""What counts as a role's answer, as against a step of tool work, in one place.

A turn in which a role used tools ends, with the scripted model, in AutoGen's ToolCallSummaryMessage;
with a real model (reflection on tool use) in a TextMessage that sums the results up. Both are the same
kind of turn: the loop guard, the event triggers (`ROLE finished`) and the selector's repeat count treat
them alike, so a team behaves the same on the scripted and on a real model.
"""

from __future__ import annotations

from autogen_agentchat.base import Response
from autogen_agentchat.messages import (
    BaseChatMessage,
    TextMessage,
    ToolCallExecutionEvent,
    ToolCallSummaryMessage,
)

AFTER_TOOLS = "parley.after_tools"
"""Metadata key set on a reflection: the role's text right after its own tool calls in the same turn."""


def mark_reflection(response: Response) -> Response:
    """The response with its chat message marked when it reflects on tool calls made in the same turn."""
    message = response.chat_message
    if isinstance(message, TextMessage) and any(
        isinstance(m, ToolCallExecutionEvent) for m in response.inner_messages or ()
    ):
        message.metadata = {**message.metadata, AFTER_TOOLS: "1"}
    return response


def tool_step(message: BaseChatMessage) -> bool:
    """True for a turn of tool work (its results, or a reflection on them); False for an answer."""
    return isinstance(message, ToolCallSummaryMessage) or message.metadata.get(AFTER_TOOLS) == "1"
