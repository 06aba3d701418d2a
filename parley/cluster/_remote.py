"""A run live in another process, as this process sees it: its events from the store and then from the bus, and
the commands typed here sent to the process that owns it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import UnknownRequestError
from ..events import (
    ApprovalRequestEvent,
    ChunkEvent,
    EscalationEvent,
    Event,
    FileEvent,
    QuestionEvent,
    RunResult,
    RunStartedEvent,
    decode_events,
)
from ..paths import data_dir_path, inside
from ..projection import Projection
from ..store import EventRow
from ._commands import Command

if TYPE_CHECKING:
    from ..conversation import Conversation
    from ._node import Node

__all__ = ["RemoteRun"]

log = logging.getLogger("parley.cluster")


class RemoteRun:
    """What a page or an API client does with a run, for a run another process drives. Iterate it for the
    run's events (those already stored, then each as the owner shows it); its commands go to the owner in the
    order they were given here."""

    def __init__(self, node: Node, conversation: Conversation, actor: str) -> None:
        self.node = node
        self.conversation = conversation
        """A local copy of the conversation, never driven here: its history grows with what the run shows."""
        self.actor = actor
        """Who gives the commands typed here (a decision may name someone else: see `approve`)."""
        self.result: RunResult | None = None
        self.unsaved = False
        self.task = ""
        self._known = len(conversation.history)
        """How many of the thread's events the copy's history holds (the page was shown them): later ones are
        yielded."""
        self._events: list[Event] = []
        self._projection = Projection()
        self._outgoing: asyncio.Queue[Command] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._seen = 0
        """The highest seq of the thread this process has taken in."""
        self._start: str | None = None
        """Where on the bus the run is followed from (see catch_up)."""
        self._backlog: list[Event] = []
        self.number = 1 + sum(isinstance(e, RunStartedEvent) for e in conversation.history)
        """The run's place among the conversation's runs (the next one's, until the owner starts it)."""
        self.earlier: list[Event] = []
        """The run's events the page had been shown before this view of it began."""

    @property
    def thread_id(self) -> str:
        tid = self.conversation.thread_id
        assert tid is not None
        return tid

    # -- what the run shows ----------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        return self._events

    @property
    def pending_approvals(self) -> list[ApprovalRequestEvent]:
        return self._projection.approvals

    @property
    def pending_questions(self) -> list[QuestionEvent]:
        return self._projection.questions

    @property
    def pending_escalations(self) -> list[EscalationEvent]:
        return self._projection.escalations

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._follow()

    async def catch_up(self, *, next_run: bool = False) -> None:
        """Read what the store holds of the run: what the page was shown (the copy's history) is taken in, as
        `earlier`; what came after waits to be yielded. The bus's position is taken first, so nothing shown
        meanwhile is missed; what both hold comes once (by its seq). `next_run`: the run to show is the one a
        message just sent is to start, not the last one stored (which has ended)."""
        bus, store, tid = self.node.bus, self.node.store, self.thread_id
        self._start = await bus.last_id(tid)
        rows = await store.events(tid)
        decoded = [(row, _decoded(row.payload)) for row in rows]
        after = _shown_through(decoded, self._known)
        begun = max((i for i, r in enumerate(rows) if r.type == "run_started"), default=len(rows))
        finished = any(r.type == "result" for r in rows[begun:])
        if next_run and finished:
            begun, finished = len(rows), False
        self.number = sum(r.type == "run_started" for r in rows) + (finished or begun == len(rows))
        self._seen = rows[begun - 1].seq if begun > 0 else 0  # what came before the run is not its
        for row, event in decoded[begun:]:
            self._seen = row.seq
            if event is None:
                continue
            if row.seq <= after:
                self.earlier.append(event)
                self._take(event, shown=False)
            else:
                self._backlog.append(event)

    async def _follow(self) -> AsyncIterator[Event]:
        if self._start is None:
            await self.catch_up()
        if self.result is not None:
            return
        async with contextlib.aclosing(self._coming()) as coming:
            async for event in coming:
                if isinstance(event, FileEvent) and (event := _here(self.thread_id, event)) is None:
                    continue
                self._take(event, shown=True)
                yield event
                if isinstance(event, RunResult):
                    return

    async def _coming(self) -> AsyncGenerator[Event]:
        """The run's events not yielded yet: the backlog, then each from the bus, what it lost read from the store."""
        while self._backlog:
            yield self._backlog.pop(0)
        assert self._start is not None
        async for entry in self.node.bus.follow_quietly(self.thread_id, self._start):
            _, payload, seq = entry or ("", None, None)
            if seq is not None and seq <= self._seen:
                continue
            if payload is None or (seq is not None and seq > self._seen + 1):
                # Quiet for a while, or the run's events jumped ahead: Redis lost some (a trimmed stream, a
                # restart, a relay that could not reach it). The store has them all.
                async for event in self._missed(seq):
                    yield event
            if payload is None:
                continue
            self._seen = seq if seq is not None else self._seen
            event = _decoded(payload)
            if event is not None:
                yield event

    async def _missed(self, before: int | None) -> AsyncIterator[Event]:
        """The run's stored events after the last one seen and before seq `before` (None: all of them)."""
        for row in await self.node.store.events(self.thread_id, self._seen):
            if before is not None and row.seq >= before:
                return
            self._seen = row.seq
            event = _decoded(row.payload)
            if event is not None:
                yield event

    def _take(self, event: Event, *, shown: bool) -> None:
        """Fold in an event of the run; one `shown` from now on joins the copy's history too."""
        if isinstance(event, RunStartedEvent):
            self.task = event.content
        if not isinstance(event, ChunkEvent):
            self._events.append(event)
            self._projection.apply(event)
            if shown:
                self.conversation.history.append(event)
        if isinstance(event, RunResult):
            self.result = event

    async def wait(self) -> RunResult:
        async for _ in self:
            pass
        assert self.result is not None
        return self.result

    # -- what is typed here, for the owner --------------------------------------------------------------

    def say(self, text: str, *, author: str = "") -> None:
        self._send("say", text=text, actor=author or self.actor)

    def interrupt(self, text: str, *, author: str = "") -> None:
        self._send("interrupt", text=text, actor=author or self.actor)

    def stop(self, *, actor: str = "") -> None:
        """Stop the run (as `actor`, by default this watcher's user): its result names who stopped it."""
        self._send("stop", actor=actor or self.actor)

    def leave_escalated(self) -> None:
        """End the run because nobody is there to settle its escalation (see Run.leave_escalated)."""
        self._send("leave_escalated")

    def approve(self, request_id: str, *, actor: str = "user") -> None:
        self._open("approval request", request_id, [e.request_id for e in self.pending_approvals])
        self._send("approve", target=request_id, actor=actor)

    def deny(self, request_id: str, reason: str = "", *, actor: str = "user") -> None:
        self._open("approval request", request_id, [e.request_id for e in self.pending_approvals])
        self._send("deny", target=request_id, text=reason, actor=actor)

    def answer(self, question_id: str, text: str, *, actor: str = "user") -> None:
        self._open("question", question_id, [e.question_id for e in self.pending_questions])
        self._send("answer", target=question_id, text=text, actor=actor)

    @staticmethod
    def _open(kind: str, key: str, waiting: list[str]) -> None:
        """As a local run says: a decision on something not waiting (never asked, or decided) is refused."""
        if key not in waiting:
            raise UnknownRequestError(kind, key, waiting)

    def resolve(
        self,
        escalation_id: str,
        *,
        choose: int | None = None,
        text: str | None = None,
        proceed: bool = False,
        actor: str = "user",
    ) -> None:
        self._open("escalation", escalation_id, [e.escalation_id for e in self.pending_escalations])
        self._send(
            "resolve", target=escalation_id, choose=choose, text=text or "", proceed=proceed, actor=actor
        )

    def _send(self, kind: str, **fields: Any) -> None:
        fields.setdefault("actor", self.actor)
        if kind != "say":
            fields["run"] = self.number
        self._outgoing.put_nowait(Command.model_validate({"kind": kind, "id": uuid.uuid4().hex, **fields}))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_all(), name="parley-remote-send")

    async def _send_all(self) -> None:
        while not self._outgoing.empty():
            command = self._outgoing.get_nowait()
            try:
                await self.node.bus.send(self.thread_id, command)
            except Exception:  # the page keeps working; the command is lost, and said so in the log
                log.exception("could not send %s to the owner of %s", command.kind, self.thread_id)

    async def close(self) -> None:
        """Wait until every command given here has gone out."""
        if self._sender is not None:
            await self._sender


def _shown_through(decoded: list[tuple[EventRow, Event | None]], known: int) -> int:
    """The seq of the last of the thread's first `known` events this version reads (a copy's history holds those)."""
    readable = [row.seq for row, event in decoded if event is not None]
    if 0 < known <= len(readable):
        return readable[known - 1]
    return decoded[-1][0].seq if decoded and known else 0


def _here(tid: str, event: FileEvent) -> FileEvent | None:
    """The file a tool of the owner wrote, as this process finds it: by its name in the conversation's workspace
    under this process's data folder (shared with the owner's, wherever it is mounted), never by the path the owner
    gave (an entry on the bus could name any file here). None for a name that leads out of the workspace."""
    try:
        path = inside(data_dir_path() / "workspaces" / tid, event.name)  # tid: a server id, never a path
    except ValueError:
        log.warning("skipped a file of thread %s whose name leads out of its workspace", tid)
        return None
    return event.model_copy(update={"path": str(path)})


def _decoded(payload: dict[str, Any]) -> Event | None:
    """The event, or None for a kind this version cannot read (as a stored thread is read back)."""
    readable = decode_events([payload])
    return readable[0] if readable else None
