"""The messages the web chat streams: one a speaker, sent in pieces as the model writes it."""

from __future__ import annotations

import time
from collections.abc import Callable

import chainlit as cl
from chainlit.utils import utc_now

from ..events import ChunkEvent, Event, MessageEvent
from ..models import STREAM_EVERY_S, Cadence
from ._ratings import RUN_NAME

PAGE_STREAMS = Cadence()
"""The messages this process's pages are being streamed: how often each is sent what came."""
Rating = Callable[[], str | None]
"""The id of the rating step the speaker's next message goes in (see _ratings), or None: no thumbs."""


class Streams:
    """The message each speaker is writing, and the text streamed for it and not sent yet."""

    def __init__(self) -> None:
        self.messages: dict[str, cl.Message] = {}
        """The message each speaker is writing: one at a time per speaker, whatever turn numbers its chunks carry."""
        self.held: dict[str, list[str]] = {}
        """Streamed text not sent yet, per speaker."""
        self.sent_at: dict[str, float] = {}

    async def chunk(self, ev: ChunkEvent, header: str, rating: Rating) -> None:
        """A piece of `ev.source`'s message; `header` starts the message when this is its first piece, inside the
        rating step `rating()` names."""
        msg = self.messages.get(ev.source)
        held = self.held.setdefault(ev.source, [])
        first = msg is None
        if first:
            msg = self.messages[ev.source] = await rated(ev.source, rating())
            PAGE_STREAMS.begin(msg)
            held.append(header)  # sent with the first piece: the page is sent the message's start once
        # The engine already passes text on at most every STREAM_EVERY_S; under load, pieces still pile up
        # in the run's queue while this session is busy, and each socket message costs the server more than
        # the rest of the chat: send what piled up as one, and send less often while this process streams to
        # many pages (parley.models._cadence). What is held back goes with the next piece or the whole message.
        held.append(ev.content)
        now = time.monotonic()
        # (Half a period early is on time: the engine's pieces come about every period, give or take.)
        if first or PAGE_STREAMS.due(now + STREAM_EVERY_S / 2, 0.0, self.sent_at.get(ev.source, 0.0)):
            await self._send(ev.source, msg, held, now)

    async def _send(self, source: str, msg: cl.Message, held: list[str], now: float) -> None:
        """Send `source`'s held text now as one piece of `msg`."""
        await msg.stream_token("".join(held))
        held.clear()
        self.sent_at[source] = now

    async def take(self, source: str, rating: Rating) -> cl.Message:
        """The message `source` was streaming, no longer streamed (its whole text replaces the pieces), or a new one
        (inside the rating step `rating()` names)."""
        self.held.pop(source, None)
        self.sent_at.pop(source, None)  # its next message's first piece goes at once
        if (msg := self.messages.pop(source, None)) is not None:
            PAGE_STREAMS.end(msg)
            return msg
        return await rated(source, rating())

    async def close_unsaved(self) -> None:
        """The store failed: send what each message streamed so far, saying it was not kept."""
        for source, msg in list(self.messages.items()):
            msg.content += (
                "".join(self.held.pop(source, [])) + "\n\n*(not saved: saving the conversation failed)*"
            )
            await msg.send()
        self.clear()

    def clear(self) -> None:
        """Forget the messages being streamed (they belonged to a page no longer shown)."""
        for msg in self.messages.values():
            PAGE_STREAMS.end(msg)
        self.messages.clear()
        self.held.clear()
        self.sent_at.clear()

    async def before(self, ev: Event) -> None:
        """`ev` is shown next: if it is not a piece or the whole of a message (which replaces the pieces), send the
        text held back first, so that it does not wait behind a tool call, an approval or a question."""
        if isinstance(ev, ChunkEvent | MessageEvent):
            return
        for source, held in self.held.items():
            if held and (msg := self.messages.get(source)) is not None:
                await self._send(source, msg, held, time.monotonic())


async def rated(source: str, rating: str | None) -> cl.Message:
    """A new message of `source`, not sent yet; inside rating step `rating` (sent now: the page drops a message
    whose parent it does not have), so the page offers thumbs under it."""
    msg = cl.Message(content="", author=source)
    if rating is not None:
        run = cl.Step(name=RUN_NAME, type="run", id=rating)
        run.start = run.end = utc_now()  # ended: the page offers thumbs on what it holds (once streamed)
        await run.send()
        msg.parent_id = rating
    return msg
