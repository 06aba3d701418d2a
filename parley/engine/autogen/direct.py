"""Streamed text taken straight from an agent to the run, past AutoGen's runtime, in its place among the turn's
other events.

Every item an agent yields crosses AutoGen's runtime on its way to the run: published to the team's output topic,
queued, handed to a closure agent, queued again, then yielded by `run_stream`. That costs about 0.4 ms per item
(AutoGen also formats each published message into a log line, logging on or not), and a reply streamed a word at
a time is dozens of items. The run needs streamed pieces for live display only: they are never part of the
team's state. So a team member hands its pieces to the session's `DirectChunks` instead of yielding them, and
yields only the rest.

Order is kept with one count shared by the team's members: every item a member yields through the runtime is
numbered as it is yielded (`sent`), and a piece is tagged with the number of items yielded before it. The run
shows a piece once every item numbered up to its tag has come out of `run_stream` (`received`), so a piece
never overtakes the tool call, notice or message its agent yielded before it (nor anything another member
yielded earlier: the runtime keeps the order items were yielded in). What the run never receives (the segment
was cancelled with items still queued) releases its pieces when the segment ends (`flush`).

Only the top-level team's members take this path, and only while the session consumes its team
(`attach`/`detach`): a sub-team's or a worker's items reach the run inside their manager's stream, and an
event-driven role is run directly by the session, so theirs are yielded as before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from autogen_agentchat.messages import ModelClientStreamingChunkEvent

ENABLED = True
"""Whether team members hand their pieces over directly (bench/streaming.py measures both ways)."""

Show = Callable[[ModelClientStreamingChunkEvent], None]


class DirectChunks:
    """The streamed pieces of one team's members, on their way to the run that consumes the team."""

    def __init__(self) -> None:
        self._show: Show | None = None
        self._count = 0
        """Items the members have yielded through the runtime so far."""
        self._numbers: dict[str, int] = {}
        """Each item yielded and not received yet: its number, by the item's id."""
        self._done = 0
        """The highest number received."""
        self._waiting: deque[tuple[int, ModelClientStreamingChunkEvent]] = deque()

    def attach(self, show: Show) -> None:
        """The run consumes the team from now on: pieces go to `show`, in order."""
        self._show = show

    def detach(self) -> None:
        """The segment is over: what waits is shown now, and pieces go through the runtime until the next."""
        self.flush()
        self._show = None
        self._numbers.clear()

    def take(self, chunk: ModelClientStreamingChunkEvent) -> bool:
        """A member streamed `chunk`: True if it was taken (shown now or once its turn comes), False if the member
        must yield it as usual (nobody consumes the team directly)."""
        show = self._show
        if show is None or not ENABLED:
            return False
        # An item yielded before it is still on its way (whenever pieces wait, one is).
        if self._count > self._done:
            self._waiting.append((self._count, chunk))
        else:
            show(chunk)
        return True

    def sent(self, item_id: str) -> None:
        """A member yields the item `item_id` through the runtime."""
        if self._show is None:
            return
        self._count += 1
        self._numbers[item_id] = self._count

    def received(self, item_id: str) -> None:
        """The run has shown the item `item_id` from `run_stream`: the pieces that came after it follow."""
        number = self._numbers.pop(item_id, None)
        if number is None:
            return
        self._done = max(self._done, number)
        show = self._show
        while self._waiting and self._waiting[0][0] <= self._done and show is not None:
            show(self._waiting.popleft()[1])

    def flush(self) -> None:
        """Every waiting piece, shown now in order."""
        show = self._show
        while self._waiting and show is not None:
            show(self._waiting.popleft()[1])
        self._waiting.clear()
        self._done = self._count
