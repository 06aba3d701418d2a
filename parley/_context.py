"""What a role's model sees of the conversation: a team file's `context:` policy.

A naive group chat sends every agent the whole history, so prompt tokens grow with the square of
the conversation's length. A role's view here is bounded instead:

- the task (the run's first human message), always;
- the latest human messages, always, however old;
- a running summary of the turns that fell out of the window, when `summary` is on;
- the last `window` turns, where a tool call and its results count as one turn;
- everything of the role's own turn in progress (its tool calls and their results).

What can never be shown again is forgotten, so a role's saved state stays the size of its view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autogen_core.model_context import UnboundedChatCompletionContext
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    FunctionExecutionResultMessage,
    LLMMessage,
    SystemMessage,
    UserMessage,
)

from ._text import one_line

HUMAN = "user"
KEEP_HUMAN = 3
"""Human messages older than the window that stay in view (the task aside)."""
SUMMARY_CHARS = 700
TURN_CHARS = 1200
SUMMARY_SOURCE = "summary"

_PROMPT = (
    "You keep the running summary of a team conversation for members who no longer see the older turns. "
    "Merge the summary so far with the new turns. Keep decisions, figures, names, open questions and who "
    "said what. Plain text, at most 80 words, no preamble."
)


def _text(message: LLMMessage) -> str:
    content: Any = message.content
    if isinstance(content, str):
        return content
    if isinstance(message, FunctionExecutionResultMessage):
        return "tool results: " + "; ".join(r.content for r in message.content)
    if isinstance(message, AssistantMessage):
        return "called " + ", ".join(getattr(c, "name", "a tool") for c in content)
    return " ".join(part for part in content if isinstance(part, str))


def _who(message: LLMMessage) -> str:
    return getattr(message, "source", None) or type(message).__name__.removesuffix("Message").lower()


def _is_call(message: LLMMessage) -> bool:
    return isinstance(message, AssistantMessage) and not isinstance(message.content, str)


def _is_human(message: LLMMessage) -> bool:
    return isinstance(message, UserMessage) and message.source == HUMAN


class Summariser:
    """The running summary's model calls for one conversation, on a metered client (source `summariser`).

    Roles whose windows drop the same turns share one call: the result is cached by what was summarised.
    """

    def __init__(self, client: ChatCompletionClient) -> None:
        self.client = client
        self._done: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    async def __call__(self, previous: str, turns: Sequence[tuple[str, str]]) -> str:
        key = (previous, tuple(turns))
        if key not in self._done:
            lines = "\n".join(f"[{who}] {' '.join(text.split())[:TURN_CHARS]}" for who, text in turns)
            prompt = f"Summary so far:\n{previous or '(none)'}\n\nNew turns:\n{lines}\n\nThe new summary:"
            result = await self.client.create([SystemMessage(content=_PROMPT), UserMessage(content=prompt, source=HUMAN)])
            self._done[key] = one_line(result.content if isinstance(result.content, str) else previous, SUMMARY_CHARS)
        return self._done[key]


class PolicyContext(UnboundedChatCompletionContext):
    """A role's bounded view of the conversation (see the module docstring). `window=None` keeps everything."""

    def __init__(self, window: int | None, summariser: Summariser | None = None) -> None:
        super().__init__()
        self.window = window
        self.summariser = summariser
        self.summary = ""
        self._summarised: set[int] = set()
        """Indexes of the messages the summary covers."""

    @property
    def batch(self) -> int:
        """Turns summarised per summariser call; until then, dropped turns stay in view (nothing vanishes)."""
        return max(2, (self.window or 0) // 2)

    def _units(self, end: int) -> list[list[int]]:
        """Message indexes before `end`, grouped into turns: a tool call and its results are one turn."""
        units: list[list[int]] = []
        for i in range(end):
            message = self._messages[i]
            if isinstance(message, FunctionExecutionResultMessage) and units and _is_call(self._messages[units[-1][0]]):
                units[-1].append(i)
            elif isinstance(message, FunctionExecutionResultMessage):
                continue  # a result whose call is gone: OpenAI-style APIs reject it
            else:
                units.append([i])
        return units

    async def get_messages(self) -> list[LLMMessage]:
        messages = self._messages
        if self.window is None:
            return list(messages)
        # The role's own turn in progress (its calls and their results) is always in view.
        cut = len(messages)
        while cut > 0 and (_is_call(messages[cut - 1]) or isinstance(messages[cut - 1], FunctionExecutionResultMessage)):
            cut -= 1
        units = self._units(cut)
        task = next((i for i in range(cut) if _is_human(messages[i])), None)
        if len(units) <= self.window + (task is not None):
            return list(messages)
        recent = units[-self.window :]
        older = [u for u in units[: -self.window] if u[0] != task]
        humans = [u for u in older if _is_human(messages[u[0]])][-KEEP_HUMAN:]
        dropped = [u for u in older if u not in humans]
        shown = list(humans)
        if self.summariser is not None:
            pending = [u for u in dropped if u[0] not in self._summarised]
            # Fixed-size chunks in conversation order: roles that dropped the same turns ask for the same summaries.
            while len(pending) >= self.batch:
                chunk, pending = pending[: self.batch], pending[self.batch :]
                turns = [(_who(messages[i]), _text(messages[i])) for u in chunk for i in u]
                self.summary = await self.summariser(self.summary, turns)
                self._summarised.update(i for u in chunk for i in u)
            shown += pending
        head = [messages[task]] if task is not None else []
        if self.summary:
            head.append(UserMessage(content=f"Summary of the earlier conversation: {self.summary}", source=SUMMARY_SOURCE))
        middle = [messages[i] for u in sorted(shown) for i in u]
        view = head + middle + [messages[i] for u in recent for i in u] + list(messages[cut:])
        # Forget what can never be shown again, so the role's state (saved after every message) stays small.
        gone = {i for u in dropped for i in u} if self.summariser is None else self._summarised
        if gone:
            self._messages = [m for i, m in enumerate(messages) if i not in gone]
            self._summarised = set()
        return view

    async def clear(self) -> None:
        await super().clear()
        self.summary = ""
        self._summarised = set()

    async def save_state(self) -> Mapping[str, Any]:
        return {**await super().save_state(), "summary": self.summary, "summarised": sorted(self._summarised)}

    async def load_state(self, state: Mapping[str, Any]) -> None:
        await super().load_state({"messages": state.get("messages", [])})
        self.summary = str(state.get("summary", ""))
        self._summarised = {int(i) for i in state.get("summarised", [])}
