"""The owner's side of a live run: the lease held while it runs, each event it shows sent to every other node,
and the commands other nodes send applied to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConfigError, RunStateError
from ..events import ChunkEvent, Event
from ._commands import Command
from ._lease import Lease

if TYPE_CHECKING:
    from ..conversation import Conversation
    from ..run import Run
    from ._node import Node

__all__ = ["Relay", "apply", "coalesced"]

log = logging.getLogger("parley.cluster")
PUBLISH_BATCH = 200
"""Events sent out in one round trip at most."""


def coalesced(batch: list[tuple[Event, int | None]]) -> list[tuple[Event, int | None]]:
    """The batch with each run of streamed pieces of one message (consecutive chunks of a speaker's turn) as one
    piece: the same text in order, fewer entries for every watcher to read."""
    out: list[tuple[Event, int | None]] = []
    for event, seq in batch:
        last = out[-1][0] if out else None
        if (
            isinstance(event, ChunkEvent)
            and isinstance(last, ChunkEvent)
            and (last.source, last.turn) == (event.source, event.turn)
        ):
            out[-1] = (last.model_copy(update={"content": last.content + event.content}), None)
        else:
            out.append((event, seq))
    return out


def apply(conversation: Conversation, command: Command) -> Run | None:
    """Do what another node asked of this conversation's run. A human message to an idle conversation starts a
    run (as `Conversation.say` does); any other command for a run that has ended is moot. Returns the run a
    message started, if it did."""
    run = conversation.current_run
    live = run if conversation.running else None
    if command.kind != "say" and live is not None and command.run is not None and command.run != live.number:
        live = None  # meant for a run that has ended: moot for this one
    try:
        if command.kind == "say":
            started = conversation.say(command.text, author=command.actor)
            return started if live is None else None
        if live is None:
            log.info("%s for %s: no run in progress", command.kind, conversation.thread_id)
            return None
        _TO_RUN[command.kind](live, command)
    except (
        KeyError,
        ValueError,
        ConfigError,
        RunStateError,
    ) as exc:  # decided already, or refused: said here
        log.info("%s for %s refused: %s", command.kind, conversation.thread_id, exc)
    return None


_TO_RUN: dict[str, Callable[[Run, Command], None]] = {
    "interrupt": lambda run, c: run.interrupt(c.text, author=c.actor),
    "stop": lambda run, c: run.stop(actor=c.actor),
    "leave_escalated": lambda run, c: run.leave_escalated(),
    "approve": lambda run, c: run.approve(c.target, actor=c.actor),
    "deny": lambda run, c: run.deny(c.target, c.text, actor=c.actor),
    "answer": lambda run, c: run.answer(c.target, c.text, actor=c.actor),
    "resolve": lambda run, c: run.resolve(
        c.target, choose=c.choose, text=c.text or None, proceed=c.proceed, actor=c.actor
    ),
}
"""What each command other than a message does to the run in progress."""


class Relay:
    """Drives one conversation's runs for the cluster while this process holds its lease."""

    def __init__(self, node: Node, conversation: Conversation, lease: Lease) -> None:
        self.node = node
        self.conversation = conversation
        self.lease = lease
        self.lost = False
        """True once another process took the conversation over (this one's writes are refused from then)."""
        self._out: asyncio.Queue[tuple[Event, int | None]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._keeper: asyncio.Task[None] | None = None
        self.reader: asyncio.Task[None] | None = None
        """Takes the conversation's commands and applies them, while this process owns it."""
        self.idle = asyncio.Event()
        """Set when no run is in progress any more and every event has gone out: the lease can go."""
        self.applied = asyncio.Event()
        """Set each time a command was applied (the lease does not go while commands wait)."""

    @property
    def thread_id(self) -> str:
        return self.lease.thread_id

    def begin(self) -> None:
        """Hold the lease and take commands from now on."""
        self.conversation.fence = self.lease
        self._keeper = self.node.leases.keep(self.lease, self._lost)
        loop = asyncio.get_running_loop()
        self.reader = loop.create_task(self._commands(), name=f"parley-relay-in-{self.thread_id}")
        self._tasks = [
            loop.create_task(self._publish(), name=f"parley-relay-out-{self.thread_id}"),
            self.reader,
        ]

    def watch(self, run: Run) -> None:
        """Send each event `run` shows to the other nodes. Called as the run starts, before it shows anything."""
        self.idle.clear()
        run.on_shown(lambda event, seq: self._out.put_nowait((event, seq)))
        done = asyncio.get_running_loop().create_task(
            self._until_done(run), name=f"parley-relay-run-{self.thread_id}"
        )
        self._tasks.append(done)

    async def _until_done(self, run: Run) -> None:
        await run.wait()
        await self._out.join()
        if not self.conversation.running:
            self.idle.set()

    def _lost(self) -> None:
        self.lost = True
        if (
            self.reader is not None
        ):  # the commands are the new owner's: what was taken and not applied goes back
            self.reader.cancel()
        run = self.conversation.current_run
        if run is not None and self.conversation.running:
            log.warning("lost the lease of %s: its run stops here", self.thread_id)
            run.stop()

    async def _publish(self) -> None:
        """Send the run's events out as they come: what came while the last went out goes in one round trip."""
        bus, tid = self.node.bus, self.thread_id
        while True:
            batch = [await self._out.get()]
            while not self._out.empty() and len(batch) < PUBLISH_BATCH:
                batch.append(self._out.get_nowait())
            try:
                # A run whose conversation another process took over: its end is not the run's.
                if not self.lost:
                    out = [(event.model_dump(mode="json"), seq) for event, seq in coalesced(batch)]
                    await bus.publish_many(tid, out)
            except Exception:  # a watcher elsewhere misses them live; the store has them
                log.exception("could not relay %d event(s) of %s", len(batch), tid)
            finally:
                for _ in batch:
                    self._out.task_done()

    async def _commands(self) -> None:
        bus, tid = self.node.bus, self.thread_id
        try:  # what an earlier owner took and never applied comes first
            if reclaimed := await bus.reclaim(tid):
                log.warning(
                    "%d command(s) for %s an earlier owner never applied: applying them", reclaimed, tid
                )
        except Exception:  # Redis is unreachable: they wait for the next owner
            log.exception("could not look for commands an earlier owner of %s left", tid)
        async for command in bus.commands(tid, self.node.name):
            started = apply(self.conversation, command)
            if started is not None:
                self.watch(started)
            self.applied.set()

    async def close(self) -> None:
        """Stop relaying and let the lease go (the run has ended, or the process is going away)."""
        for task in self._tasks:
            task.cancel()
        if self._keeper is not None:
            self._keeper.cancel()
        for task in [*self._tasks, *([self._keeper] if self._keeper else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        running = self.conversation.running
        if not running:  # a run still going keeps its fence: once the lease is let go, its writes are refused
            self.conversation.fence = None
        if not self.lost:
            await self.node.leases.release(self.lease, run_open=running)
