"""One conversation's team on AutoGen: built on first use, streamed a segment at a time, cancelled on demand.

The run hands a segment the human messages to deliver and a sink; the session turns AutoGen's stream into
parley's events on that sink, in the stream's order, and keeps the team's checkpoint up to date.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from autogen_agentchat.base import Response, TaskResult
from autogen_agentchat.messages import (
    BaseChatMessage,
    HandoffMessage,
    ModelClientStreamingChunkEvent,
    TextMessage,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
    ToolCallSummaryMessage,
)
from autogen_agentchat.teams import BaseGroupChat
from autogen_core import CancellationToken

from ..._calls import MAX_ARGUMENTS
from ..._text import redact_secrets
from ...events import (
    ChunkEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    HumanMessageEvent,
    MessageEvent,
    Position,
    SubtaskEvent,
    ToolCallEvent,
    ToolResultEvent,
    TriggerEvent,
    TurnAbandonedEvent,
    ValidationEvent,
)
from ...inbox import HumanMessage
from ...models import SELECTOR
from .. import Cancel, MessageKind
from .agent import ParleyAgent, ParleyNotice
from .build import agents_of, bind_tools, sees_images
from .direct import DirectChunks
from .internals import quiet
from .mcp import load_grants
from .teams import build_team
from .termination import RunGuard, empty_reply

if TYPE_CHECKING:
    from ...conversation import Conversation

__all__ = ["CANCEL_GRACE_S", "RunSink", "TeamSession"]

CANCEL_GRACE_S = 0.5
"""How long a cancelled team gets to wind down before the run stops waiting for it."""


class RunSink(Protocol):
    """What the session reports to the run while the team works."""

    @property
    def turns_done(self) -> int:
        """Turns of the conversation finished so far (the next event belongs to the turn after)."""
        ...

    def turn_of(self, source: str, *, start: bool = True) -> int:
        """The number of `source`'s turn in progress, given when its message starts to show (`start`)."""
        ...

    @property
    def cancel_reason(self) -> Cancel | None: ...

    def emit(self, event: Event) -> None: ...

    def answered(self, source: str, text: str, kind: MessageKind) -> None:
        """A role's finished message (a turn)."""
        ...

    def answered_nothing(self, source: str) -> None:
        """A role's model answered nothing, even when asked again: not a turn."""
        ...

    def checkpoint(self, state: Any, source: str) -> None:
        """The team's state after `source`'s message, taken just before the message is reported."""
        ...


class TeamSession:
    """The AutoGen team of one conversation (or sub-team), and the state of its current segment."""

    def __init__(self, conv: Conversation) -> None:
        self.conv = conv
        self.guard = RunGuard(
            conv.limits,
            conv.team.role_names,
            conv.meter,
            inbox=conv.inbox,
            triggers=conv.triggers,
            on_answer=self._answered,
        )
        self.stages = {r.name for r in conv.team.scheduled}
        self.clients = {
            name: conv.pool.client(
                m,
                name,
                max_reply_tokens=conv.team.reply_cap(name),
                context_tokens=conv.team.context_window(name),
            )
            for name, m in conv.role_models.items()
        }
        # The selector pattern's manager picks speakers; the consensus pattern's may settle ties.
        self.selector_client = (
            conv.pool.client(conv.model, SELECTOR) if conv.pattern.needs_manager_model(conv.team) else None
        )
        self.tools = bind_tools(conv)
        self.mcp_grants = dict(conv.mcp_grants)
        self.summarisers: dict[str, Any] = {}
        self.team: BaseGroupChat | None = None
        self.event_agents: dict[str, ParleyAgent] = {}
        """Event-driven roles: not scheduled by the manager, woken by their triggers."""
        self.seen_at: dict[str, int] = {}
        """Per event-driven role, how much of the conversation's history it has been shown."""
        self.woken: list[BaseChatMessage] = []
        """Answers of event-driven roles, fed to the team with the next segment."""
        self.handed_back: str | None = None
        """The role that handed the conversation to the human (swarm), to be handed back to."""
        self.partial: dict[str, str] = {}
        """What each role has streamed of its turn in progress."""
        self.speaker: str | None = None
        self._token: CancellationToken | None = None
        self._consumer: asyncio.Task[None] | None = None
        self.direct = DirectChunks()
        """The team members' streamed pieces, past AutoGen's runtime while this session consumes the team."""

    # -- the host the agents talk to ---------------------------------------------------------------

    def fire(self, trigger: str) -> None:
        self.conv.fire(trigger)

    def spoke(self, message: BaseChatMessage) -> None:
        """A role finished its answer: count it now (see RunGuard.observe)."""
        guard = self.guard
        guard.observe(message)
        if message.source in self.conv.workers and guard.turns >= guard.cap:
            # A worker answers inside its manager's turn, which the team's termination check only sees
            # when the manager is done: enforce the cap now, or a delegating manager could run on.
            self.conv.end_run("max_turns", f"reached {guard.cap} turns")

    def open_escalation(
        self,
        kind: str,
        source: str,
        content: str,
        positions: list[Position],
    ) -> tuple[EscalationEvent, Awaitable[EscalationResolvedEvent]]:
        return self.conv.open_escalation(kind, source, content, positions)

    def _answered(self, role: str) -> None:
        self.conv.fire(f"{role} finished")
        if role in self.stages:
            self.conv.fire("stage finished")

    # -- the team ------------------------------------------------------------------------------------

    async def ensure_team(self) -> tuple[BaseGroupChat, bool]:
        """The team, built on first use (and again after a failure) from the last checkpoint."""
        if self.team is not None:
            return self.team, False
        conv = self.conv
        if self.mcp_grants:  # connect once, on first use: listing a server's tools needs it running
            shelves = {role: conv.images for role in self.mcp_grants if sees_images(self, role)}
            for role, tools in (
                await load_grants(conv.team, self.mcp_grants, conv, conv.mcp, shelves)
            ).items():
                self.tools[role] = [*self.tools[role], *tools]
            self.mcp_grants = {}
        agents = await agents_of(self, self.tools)
        waiting = {r.name for r in conv.team.roles if r.on}
        self.event_agents = {a.name: a for a in agents if a.name in waiting}
        self._stream_directly(agents, waiting)
        manager = conv.pool.capabilities(conv.model)
        team = quiet(
            build_team(
                conv.team,
                [a for a in agents if a.name not in waiting],
                self.guard,
                selector_client=self.selector_client,
                selector_json_schema=manager.json_schema,
                on_pick=conv.picked,
                selector_avoid_repeat=not manager.picks_reliably,
                host=self,
                on_notice=conv.notice,
                # A voter whose model may not be asked again (a script: its replies are its script) is never re-asked.
                ballots={
                    name: (self.clients[name], caps.json_schema)
                    for name, m in conv.role_models.items()
                    if (caps := conv.pool.capabilities(m)).reasks
                },
            )
        )
        await conv.checkpoints.load_into(team)
        self.team = team
        return team, True

    def _stream_directly(self, agents: Sequence[ParleyAgent], waiting: set[str]) -> None:
        """The team's scheduled members hand their streamed pieces to the run past AutoGen's runtime (see direct).
        A worker's reach the run inside its manager's stream, and an event-driven role is run directly."""
        for agent in agents:
            if agent.name not in waiting and agent.name not in self.conv.workers:
                agent.direct = self.direct

    def drop(self) -> None:
        """After a failure or a cancel the team object is suspect: rebuild it from the checkpoint next time."""
        self.team = None

    def cancel(self) -> None:
        """Cancel the model call in progress and every other; stop waiting for the team after a grace."""
        if self._token is not None:
            self._token.cancel()
            asyncio.get_running_loop().call_later(CANCEL_GRACE_S, self._force_end, self._consumer)

    @staticmethod
    def _force_end(consumer: asyncio.Task[None] | None) -> None:
        """AutoGen waits for its runtime to go idle after a cancel, which never happens while a tool is
        still running: stop waiting. The team object is dropped; its clients refuse any further call."""
        if consumer is not None and not consumer.done():
            consumer.cancel()

    # -- segments --------------------------------------------------------------------------------------

    def _feed(self, batch: Sequence[HumanMessage]) -> list[BaseChatMessage]:
        """What the team is given: the answers of woken roles, then the human messages."""
        given: list[BaseChatMessage] = [*self.woken]
        self.woken = []
        back_to, self.handed_back = self.handed_back, None
        for message in batch:
            if back_to is not None:  # a swarm waiting on the human: hand the conversation back
                given.append(HandoffMessage(content=message.text, source="user", target=back_to))
                back_to = None
            else:
                given.append(TextMessage(content=message.text, source="user"))
        self.conv.checkpoints.fed(given)  # a rebuilt team holds everything said before (see state.py)
        return given

    async def segment(self, deliver: Callable[[], Sequence[HumanMessage]], sink: RunSink) -> None:
        """One `run_stream` of the team with the human messages `deliver()` hands over; raises what the team
        raised (a cancel too). Returns at once when the run was cancelled while the team was being built."""
        team, _ = await self.ensure_team()
        if sink.cancel_reason is not None:
            return
        # From here to the first iteration nothing awaits, so no command can slip between.
        self.guard.begin_segment()
        feed = self._feed(deliver())
        self._token = token = CancellationToken()
        self._consumer = consumer = asyncio.get_running_loop().create_task(
            self._consume(team, feed, token, {m.id for m in feed}, sink)
        )
        try:
            await consumer
        finally:
            self._token = None
            self._consumer = None
            if not consumer.done():  # our own task was cancelled from outside
                consumer.cancel()

    async def _consume(
        self,
        team: BaseGroupChat,
        feed: list[BaseChatMessage],
        token: CancellationToken,
        fed_ids: set[str],
        sink: RunSink,
    ) -> None:
        self.direct.attach(lambda chunk: self._chunk(chunk, sink))
        try:
            async for item in team.run_stream(task=feed or None, cancellation_token=token):
                if isinstance(item, TaskResult):
                    continue  # let the stream finish: AutoGen marks the team idle after its last yield
                if isinstance(item, BaseChatMessage) and item.id in fed_ids:
                    continue
                if isinstance(item, BaseChatMessage) and item.source in self.conv.speakers:
                    state = await self.conv.checkpoints.after_message(
                        team, item
                    )  # first thing, before any other await
                    if state is not None:
                        sink.checkpoint(state, item.source)
                    self._message(item, sink)
                else:
                    self._event(item, sink)
                self.direct.received(item.id)
        finally:
            self.direct.detach()  # pieces still waiting are shown before the segment's end is

    async def wake(self, sink: RunSink, task: str) -> None:
        """Run the event-driven roles whose triggers fired; their answers join the team at the next segment."""
        conv = self.conv
        for role, trigger in conv.triggers.take():
            agent = self.event_agents.get(role)
            if agent is None:
                continue
            sink.emit(
                TriggerEvent(
                    source="parley",
                    role=role,
                    on=trigger,
                    content=f"{role} woken: {trigger}",
                    turn=sink.turns_done + 1,
                )
            )
            seen = self.seen_at.get(role, 0)
            news: list[BaseChatMessage] = [
                TextMessage(content=e.content, source=e.source if isinstance(e, MessageEvent) else "user")
                for e in conv.history[seen:]
                if isinstance(e, (MessageEvent, HumanMessageEvent)) and e.source != role
            ]
            self.seen_at[role] = len(conv.history)
            self._token = token = CancellationToken()
            try:
                async for item in agent.on_messages_stream(
                    news or [TextMessage(content=task, source="user")], token
                ):
                    if isinstance(item, Response):
                        self.woken.append(item.chat_message)
                        self._message(item.chat_message, sink)
                    else:
                        self._event(item, sink)
            except asyncio.CancelledError:
                if sink.cancel_reason is None:
                    raise
            finally:
                self._token = None
            if sink.cancel_reason is not None:
                return

    @staticmethod
    def failure(exc: BaseException, failures: Sequence[Any]) -> tuple[str, str]:
        """What failed, as (error type, message): the model call's own error when the meter saw one, else the
        error AutoGen re-raised, unwrapped (any secret a backend echoed in it masked)."""
        if failures:
            return failures[-1].error_type, redact_secrets(failures[-1].message)
        kind, message = _unwrapped(exc)
        return kind, redact_secrets(message)

    def abandon(self, reason: Cancel, sink: RunSink) -> None:
        """The turns in progress are cut short: what each role had streamed is kept on record.

        A model call cancelled while it waited for the next piece leaves its HTTP stream in a reference cycle
        (autogen-ext reads each piece in a task of its own; the cancelled task keeps its CancelledError, whose
        traceback holds the frames that hold the task), which only the garbage collector frees. Until then the
        connection stays open and the model's server goes on writing the answer nobody reads. So a collection
        runs as soon as the cancelled segment has unwound (tests/realpeers/test_replay_runs.py shows it)."""
        asyncio.get_running_loop().call_soon(gc.collect)
        for source, text in self.partial.items():
            if text:
                sink.emit(
                    TurnAbandonedEvent(
                        source=source, content=text, reason=reason, turn=sink.turn_of(source, start=False)
                    )
                )
        self.partial.clear()

    # -- AutoGen's stream as parley's events ----------------------------------------------------------

    def _message(self, item: BaseChatMessage, sink: RunSink) -> None:
        self.partial.pop(item.source, None)
        if isinstance(item, HandoffMessage) and item.target == "user":
            self.handed_back = item.source
        if empty_reply(item):  # asked twice, answered nothing twice: said, and not a turn
            sink.answered_nothing(item.source)
            return
        kind: MessageKind = (
            "tool_summary"
            if isinstance(item, ToolCallSummaryMessage)
            else ("handoff" if isinstance(item, HandoffMessage) else "text")
        )
        sink.answered(item.source, item.to_text(), kind)

    def _event(self, item: Any, sink: RunSink) -> None:
        # A turn takes its number when its text starts to show; a tool call before it, or a tally, takes none.
        streamed = isinstance(item, ModelClientStreamingChunkEvent)
        turn = sink.turn_of(getattr(item, "source", ""), start=streamed)
        if isinstance(item, ParleyNotice):
            if item.event is None:
                return
            event = item.event.model_copy(update={"turn": turn})
            if isinstance(event, ValidationEvent) and not event.passed:
                self.partial.pop(event.source, None)  # the next attempt streams afresh
            sink.emit(event)
        elif isinstance(item, ModelClientStreamingChunkEvent):
            self._chunk(item, sink, turn)
        elif isinstance(item, ToolCallRequestEvent):
            for call in item.content:
                sink.emit(self._call_event(item.source, call.name, call.id, call.arguments, turn))
        elif isinstance(item, ToolCallExecutionEvent):
            for res in item.content:
                if res.name in self.conv.workers:
                    sink.emit(
                        SubtaskEvent(
                            source=item.source,
                            subtask_id=res.call_id,
                            worker=res.name,
                            task="",
                            status="failed" if res.is_error else "done",
                            content=res.content,
                            turn=turn,
                        )
                    )
                else:
                    sink.emit(
                        ToolResultEvent(
                            source=item.source,
                            name=res.name,
                            call_id=res.call_id,
                            content=res.content,
                            is_error=bool(res.is_error),
                            turn=turn,
                        )
                    )

    def _chunk(self, item: ModelClientStreamingChunkEvent, sink: RunSink, turn: int | None = None) -> None:
        """A piece of a role's streamed text (from `run_stream`, or handed over directly: see direct)."""
        if turn is None:
            turn = sink.turn_of(item.source, start=True)
        self.speaker = item.source
        self.partial[item.source] = self.partial.get(item.source, "") + item.content
        sink.emit(ChunkEvent(source=item.source, content=item.content, turn=turn))

    def _call_event(self, source: str, name: str, call_id: str, arguments: str, turn: int) -> Event:
        if name in self.conv.workers:
            args = _parse_args(arguments)
            task = str(args.get("task", "")) if isinstance(args, dict) else str(args)
            return SubtaskEvent(
                source=source,
                subtask_id=call_id,
                worker=name,
                task=task,
                status="started",
                content=task,
                turn=turn,
            )
        shown = _clip_args(arguments)
        return ToolCallEvent(
            source=source, name=name, arguments=_parse_args(shown), call_id=call_id, content=shown, turn=turn
        )


def _unwrapped(exc: BaseException) -> tuple[str, str]:
    # An agent's error reaches the team's caller as RuntimeError('Type: message\nTraceback...').
    text = str(exc)
    if isinstance(exc, RuntimeError) and ": " in text.split("\n", 1)[0]:
        first = text.partition("\nTraceback:")[0]
        kind, _, message = first.partition(": ")
        if kind.isidentifier():
            return kind, message
    return type(exc).__name__, text.split("\nTraceback:")[0]


def _parse_args(arguments: str) -> dict[str, Any] | str:
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):  # a model's arguments nested thousands deep are text, not a crash
        return arguments
    return value if isinstance(value, dict) else arguments


def _clip_args(arguments: str) -> str:
    """A call's arguments as shown and stored: those over the limit (the call is refused, see parley._calls) are
    cut, so a model cannot fill the store and every reader's screen with one refused call."""
    if len(arguments) <= MAX_ARGUMENTS:
        return arguments
    return (
        f"{arguments[:2000]}… ({len(arguments):,} characters; the call was refused: over {MAX_ARGUMENTS:,})"
    )


class _QuietCancel(logging.Filter):
    """AutoGen's runtime logs every exception an agent's handler raises, with its traceback, at ERROR on the
    `autogen_core` logger: the CancelledError of parley's own stop and interrupt too. With logging not set up
    (a program using the Python API), Python prints those records to stderr. The run reports a cancel as its
    own events (turn_abandoned, result "stopped"): drop the records of a cancelled handler, keep every other."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


logging.getLogger("autogen_core").addFilter(_QuietCancel())
