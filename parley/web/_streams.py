"""The messages the web chat streams: one a speaker, sent in pieces as the model writes it."""

from __future__ import annotations

import time

import chainlit as cl

from ..events import ChunkEvent
from ..models import STREAM_EVERY_S


class Streams:
    """The message each speaker is writing, and the text streamed for it and not sent yet."""

    def __init__(self) -> None:
        self.messages: dict[str, cl.Message] = {}
        """The message each speaker is writing: one at a time per speaker, whatever turn numbers its chunks carry."""
        self.held: dict[str, list[str]] = {}
        """Streamed text not sent yet, per speaker."""
        self.sent_at: dict[str, float] = {}

    async def chunk(self, ev: ChunkEvent, header: str) -> None:
        """A piece of `ev.source`'s message; `header` starts the message when this is its first piece."""
        msg = self.messages.get(ev.source)
        if msg is None:
            msg = self.messages[ev.source] = cl.Message(content="", author=ev.source)
            await msg.stream_token(header)
        # The engine already passes text on at most every STREAM_EVERY_S; under load, pieces still pile up
        # in the run's queue while this session is busy, and each socket message costs the server more than
        # the rest of the chat: send what piled up as one. What is held back goes with the next piece or the
        # whole message.
        held = self.held.setdefault(ev.source, [])
        held.append(ev.content)
        now = time.monotonic()
        if now - self.sent_at.get(ev.source, 0.0) >= STREAM_EVERY_S:
            await msg.stream_token("".join(held))
            held.clear()
            self.sent_at[ev.source] = now

    def take(self, source: str) -> cl.Message:
        """The message `source` was streaming, no longer streamed (its whole text replaces the pieces), or a new one."""
        self.held.pop(source, None)
        return self.messages.pop(source, None) or cl.Message(content="", author=source)

    async def close_unsaved(self) -> None:
        """The store failed: send what each message streamed so far, saying it was not kept."""
        for source, msg in list(self.messages.items()):
            msg.content += (
                "".join(self.held.pop(source, [])) + "\n\n*(not saved: saving the conversation failed)*"
            )
            await msg.send()
        self.messages.clear()

    def clear(self) -> None:
        """Forget the messages being streamed (they belonged to a page no longer shown)."""
        self.messages.clear()
        self.held.clear()
