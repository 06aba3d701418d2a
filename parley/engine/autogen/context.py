"""A role's bounded view of the conversation as an AutoGen model context: the `context:` policy planned in
parley._window, applied to AutoGen's messages, with the running summary asked of a metered model client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autogen_core.model_context import ChatCompletionContextState, UnboundedChatCompletionContext
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    FunctionExecutionResultMessage,
    LLMMessage,
    SystemMessage,
    UserMessage,
)

from ..._text import one_line
from ..._window import (
    HUMAN,
    SUMMARY_CHARS,
    SUMMARY_PROMPT,
    SUMMARY_SOURCE,
    Kind,
    Plan,
    batch_size,
    plan,
    summary_request,
    take_chunks,
)

__all__ = ["PolicyContext", "Summariser", "kind_of"]


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


def kind_of(message: LLMMessage) -> Kind:
    """What the view policy needs to know of one message."""
    if isinstance(message, FunctionExecutionResultMessage):
        return Kind.RESULT
    if isinstance(message, AssistantMessage) and not isinstance(message.content, str):
        return Kind.CALL
    if isinstance(message, UserMessage) and message.source == HUMAN:
        return Kind.HUMAN
    return Kind.OTHER


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
            prompt = summary_request(previous, turns)
            result = await self.client.create(
                [SystemMessage(content=SUMMARY_PROMPT), UserMessage(content=prompt, source=HUMAN)]
            )
            self._done[key] = one_line(
                result.content if isinstance(result.content, str) else previous, SUMMARY_CHARS
            )
        return self._done[key]


class PolicyContext(UnboundedChatCompletionContext):
    """A role's bounded view of the conversation (see parley._window). `window=None` keeps everything."""

    def __init__(self, window: int | None, summariser: Summariser | None = None) -> None:
        super().__init__()
        self.thread: list[LLMMessage] = []
        """What the role has been told and has said, less what can never be shown again (AutoGen's own list is
        left unused: the view, its state and its forgetting are this class's)."""
        self.window = window
        self.summariser = summariser
        self.summary = ""
        self.summarised: set[int] = set()
        """Indexes of the messages the summary covers."""

    @property
    def batch(self) -> int:
        """Turns summarised per summariser call; until then, dropped turns stay in view (nothing vanishes)."""
        return batch_size(self.window)

    async def add_message(self, message: LLMMessage) -> None:
        self.thread.append(message)

    async def get_messages(self) -> list[LLMMessage]:
        messages = self.thread
        view = None if self.window is None else plan([kind_of(m) for m in messages], self.window)
        if view is None:
            return list(messages)
        pending = await self._summarise(view.dropped) if self.summariser is not None else []
        shown = [*view.humans, *pending]
        head = [messages[view.task]] if view.task is not None else []
        if self.summary:
            head.append(
                UserMessage(
                    content=f"Summary of the earlier conversation: {self.summary}", source=SUMMARY_SOURCE
                )
            )
        middle = [messages[i] for turn in sorted(shown) for i in turn]
        recent = [messages[i] for turn in view.recent for i in turn]
        self._forget(view)
        return head + middle + recent + list(messages[view.cut :])

    async def _summarise(self, dropped: list[list[int]]) -> list[list[int]]:
        """Fold the dropped turns into the summary, a whole batch at a time; returns the turns still to fold."""
        assert self.summariser is not None
        messages = self.thread
        chunks, pending = take_chunks([t for t in dropped if t[0] not in self.summarised], self.batch)
        for chunk in chunks:
            turns = [(_who(messages[i]), _text(messages[i])) for turn in chunk for i in turn]
            self.summary = await self.summariser(self.summary, turns)
            self.summarised.update(i for turn in chunk for i in turn)
        return pending

    def _forget(self, view: Plan) -> None:
        """Forget what can never be shown again, so the role's state (saved after every message) stays small."""
        gone = {i for turn in view.dropped for i in turn} if self.summariser is None else self.summarised
        if gone:
            self.thread = [m for i, m in enumerate(self.thread) if i not in gone]
            self.summarised = set()

    async def clear(self) -> None:
        self.thread = []
        self.summary = ""
        self.summarised = set()

    async def save_state(self) -> Mapping[str, Any]:
        saved = ChatCompletionContextState(messages=self.thread).model_dump()
        return {**saved, "summary": self.summary, "summarised": sorted(self.summarised)}

    async def load_state(self, state: Mapping[str, Any]) -> None:
        self.thread = ChatCompletionContextState.model_validate(
            {"messages": state.get("messages", [])}
        ).messages
        self.summary = str(state.get("summary", ""))
        self.summarised = {int(i) for i in state.get("summarised", [])}
