"""Images an MCP tool returned, shown to a role whose model accepts images.

A tool result is text only (AutoGen's FunctionExecutionResult), so the picture goes in a user-role message
right after the tool results that name it; the result's text still describes it and names its file. Kept
in memory for the conversation (the most recent calls only): a resumed conversation has the descriptions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from autogen_core import Image
from autogen_core.models import FunctionExecutionResultMessage, LLMMessage, UserMessage

from .context import PolicyContext, Summariser

__all__ = ["ImageContext", "ImageShelf", "load_images"]

KEEP_CALLS = 20
PER_CALL = 4


def load_images(paths: Sequence[Path]) -> list[Image]:
    """The pictures among `paths` that can be shown (blocking: call it off the event loop)."""
    out: list[Image] = []
    for path in paths[:PER_CALL]:
        try:
            out.append(Image.from_file(path))
        except Exception:  # a picture that cannot be read stays a description
            continue
    return out


class ImageShelf:
    """Pictures by the id of the tool call that returned them."""

    def __init__(self) -> None:
        self._by_call: OrderedDict[str, list[Image]] = OrderedDict()

    def put(self, call_id: str, images: list[Image]) -> None:
        if not call_id or not images:
            return
        self._by_call[call_id] = images
        while len(self._by_call) > KEEP_CALLS:
            self._by_call.popitem(last=False)

    def show(self, messages: Sequence[LLMMessage]) -> list[LLMMessage]:
        out: list[LLMMessage] = []
        for message in messages:
            out.append(message)
            if isinstance(message, FunctionExecutionResultMessage):
                shown = [(r.name, im) for r in message.content for im in self._by_call.get(r.call_id, [])]
                if shown:
                    names = ", ".join(sorted({name for name, _ in shown}))
                    out.append(
                        UserMessage(
                            source="tools",
                            content=[f"The pictures {names} returned:", *(im for _, im in shown)],
                        )
                    )
        return out


class ImageContext(PolicyContext):
    """A role's view (see PolicyContext) with the pictures its MCP tools returned."""

    def __init__(self, window: int | None, summariser: Summariser | None, shelf: ImageShelf) -> None:
        super().__init__(window, summariser)
        self.shelf = shelf

    async def get_messages(self) -> list[LLMMessage]:
        return self.shelf.show(await super().get_messages())
