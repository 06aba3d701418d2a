"""A model that is a Python function: for tests, and for embedding parley in a program.

```python
from parley.models import FunctionModel, ModelRequest, ToolCall

def clerk(request: ModelRequest) -> str | ToolCall:
    if request.tools and not request.results_pending:
        return ToolCall(name="lookup", arguments={"id": 7})
    return f"{request.who} read: {request.messages[-1].text}"

conv = Conversation("team.yaml", model=FunctionModel(clerk, name="clerk"))
```

The function receives the conversation so far as the role sees it (parley's own message type, whatever the
engine) and returns text, one tool call, several, or a `ModelReply`; it may be a coroutine function. Every call
is metered like any model's (its tokens counted with tiktoken, its cost zero); a role on a function model keeps
the production tool path: after its tools ran, it is called once more, without tools, to answer their results.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from ..errors import ConfigError

FUNCTION = "function"
"""The backend name of function models in model strings (`function:NAME`)."""

Speaker = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    """A tool call a model makes (or made earlier in the conversation)."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None
    """The call's id; a fresh one is given when None."""


@dataclass(frozen=True, kw_only=True)
class ToolResult:
    """What one tool call returned."""

    call_id: str
    name: str
    content: str
    is_error: bool = False


@dataclass(frozen=True, kw_only=True)
class Message:
    """One message of the conversation as a model is sent it."""

    role: Speaker
    """`system` (instructions, summaries), `user` (the human, and other roles), `assistant` (the asking role's
    own turns) or `tool` (results of its tool calls)."""
    speaker: str
    """Who said it: a role's name, `user` for the human, `system` for instructions."""
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ModelRequest:
    """One call of a function model."""

    who: str
    """The role asking, `the selector` (picking the next speaker) or `summariser`."""
    messages: tuple[Message, ...]
    tools: tuple[str, ...] = ()
    """Names of the tools the role may call now (none: answer with text)."""

    @property
    def results_pending(self) -> bool:
        """The conversation ends with tool results the model has not answered yet."""
        return bool(self.messages) and self.messages[-1].role == "tool"

    @property
    def last_text(self) -> str:
        """The text of the latest message that has any."""
        return next((m.text for m in reversed(self.messages) if m.text), "")


@dataclass(frozen=True, kw_only=True)
class ModelReply:
    """A model's answer: text, tool calls, or both."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


ReplyLike: TypeAlias = "str | ToolCall | Sequence[ToolCall] | ModelReply"
ModelFunction: TypeAlias = "Callable[[ModelRequest], ReplyLike | Awaitable[ReplyLike]]"

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class FunctionModel:
    """A model answered by `fn`. `tools` and `vision` say what the model can take (both as model info would)."""

    def __init__(
        self, fn: ModelFunction, *, name: str | None = None, tools: bool = True, vision: bool = False
    ) -> None:
        self.fn = fn
        own = getattr(fn, "__name__", "")
        self.name = name or (own if _NAME.fullmatch(own) else "model")  # a lambda's `<lambda>`: `model`
        if not _NAME.fullmatch(self.name):
            raise ConfigError(f"function model name {self.name!r}: use letters, digits, '_', '.' or '-'")
        self.tools = tools
        self.vision = vision
        self.requests: list[ModelRequest] = []
        """Every request answered so far, for tests that inspect what a role was sent."""

    def __str__(self) -> str:
        return f"{FUNCTION}:{self.name}"

    def __repr__(self) -> str:
        return f"FunctionModel({self.name!r})"

    async def answer(self, request: ModelRequest) -> ModelReply:
        """Call the function and return its answer as a ModelReply (raising what it raises)."""
        self.requests.append(request)
        got: Any = self.fn(request)
        if inspect.isawaitable(got):
            got = await got
        return as_reply(got)


def as_reply(value: Any) -> ModelReply:
    """A function's return value as a ModelReply; anything else is a ConfigError naming what came back."""
    if isinstance(value, ModelReply):
        return value
    if isinstance(value, str):
        return ModelReply(text=value)
    if isinstance(value, ToolCall):
        return ModelReply(tool_calls=(value,))
    if isinstance(value, Sequence) and value and all(isinstance(v, ToolCall) for v in value):
        return ModelReply(tool_calls=tuple(value))
    raise ConfigError(
        f"a function model returned {type(value).__name__}: return text, a ToolCall, a list of them or a ModelReply"
    )
