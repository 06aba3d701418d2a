"""One browser session's conversation: turns parley events into Chainlit messages, live.

The run is driven from a background task so the composer stays enabled: whatever the user types while agents
work reaches `say()` and joins at the next turn. A run outlives its browser tab: reopening the thread re-attaches
the display to the run still going (in a cluster, wherever it runs)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import chainlit as cl
from chainlit.session import WebsocketSession

from .._decisions import was_cancelled
from .._model_notes import demo_marked
from ..cluster import Node, RemoteRun
from ..conversation import Conversation
from ..events import (
    AnswerEvent,
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    ChunkEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    FileEvent,
    HumanMessageEvent,
    HumanQueuedEvent,
    MessageEvent,
    NoteEvent,
    QuestionEvent,
    RunResult,
    SubtaskEvent,
    ToolCallEvent,
    ToolProgressEvent,
    ToolResultEvent,
    TurnAbandonedEvent,
    UsageEvent,
    ValidationEvent,
)
from ..host import ASK_HUMAN
from ..projection import Projection, waiting_key
from ..run import Run
from ._access import RoomAccess
from ._chainlit_fixes import on_resume_sent, show_on
from ._composer import join, settle, show_human, show_queued, stop_as
from ._composer import say_system as _say
from ._controls import (
    LiveControls,
    Offers,
    adds_message,
    cancel_card,
    closing_text,
    commands,
    index_after,
    release_when_shown,
    turn_of,
)
from ._datalayer import card_step_id, thread_as_shown
from ._elements import actions_for, every_decision_button, file_element, usage_chart
from ._format import (
    SYSTEM,
    agent_text,
    approval_text,
    decision_text,
    escalation_text,
    note,
    question_text,
    resolved_text,
    speaker_header,
    subtask_text,
    validation_text,
)
from ._guard import READ_ONLY
from ._handover import Handover
from ._panels import Meter, NotesPanel
from ._ratings import rating_id, said_by
from ._room import REVOKED, end_view_on_revoke, own_commands, share_command
from ._streams import Streams
from ._toolsteps import ToolSteps, awaits_approval, tool_summary_text

log = logging.getLogger("parley.web")
RESUME_WAIT_S = 30.0
"""A reopened page that is never sent its thread (it went away first) holds the run's display this long at most."""


class ChatSession:
    """The conversation behind one chat thread, and the messages on screen for its current run."""

    def __init__(self, conversation: Conversation, user: str, cluster: Node | None = None) -> None:
        self.conversation = conversation
        self.user = user
        self.cluster = cluster
        """The cluster this process belongs to, if any: runs may be driven by another of its processes."""
        self.run: Run | RemoteRun | None = None
        self.task: asyncio.Task[None] | None = None
        self.awaiting: tuple[str, str] | None = None
        """("deny", request id) or ("write", escalation id): the next message typed is the reason or the answer."""
        self.streams = Streams()
        self.tools = ToolSteps()
        self.controls = LiveControls()
        self._cards: dict[str, cl.Message] = {}
        """Messages updated in place, by request, question, escalation or sub-task id."""
        self.offers = Offers()
        self.projection = Projection()
        """What the current run's events add up to: decisions awaited, sub-tasks running, usage per speaker."""
        self.meter = Meter()
        self.notes = NotesPanel(self.meter)
        self._ws: WebsocketSession | None = None
        """The page the run is to be shown on from the next event (a reopened thread), once it has the thread."""
        self._gate, self._idle = asyncio.Event(), asyncio.Event()
        """Open while events may be shown (closed while a reopened page is sent the thread); set while none is."""
        self._gate.set()
        self._idle.set()
        self.access = RoomAccess(user)
        self.handover = Handover()
        """The pages that reopened the thread: the run is shown on the newest still there."""
        self._shown = len(conversation.history) if conversation is not None else 0
        """How much of the conversation's history the page has been shown (chunks aside)."""

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.result is None

    @property
    def showing(self) -> bool:
        """The run is going, or the page is still being shown its last events (the run's result comes first)."""
        return self.running or (self.task is not None and not self.task.done())

    async def on_message(self, text: str, command: str | None, message: cl.Message | None = None) -> None:
        show_on()  # what this sends is no child of Chainlit's `on_message` step: the page would rate the last
        text = text.strip()
        if command == "Share":  # never reaches the team (see _room)
            return await share_command(self.conversation, self.user, text, message)
        if command == "Stop":  # a tab opened before the Stop button: no bubble, the status line says it
            if message is not None and not text:
                await message.remove()
            if not await self.stop_now():
                await _say("Nothing is running.")
            return
        if self.awaiting and not command and self.run is not None and self.running:
            if await settle(self.run, self.awaiting, text, self.user):
                self.awaiting = None
            return
        if not text:
            await _say("Type a message first.")
            return
        await self._to_team(text, command)

    async def _to_team(self, text: str, command: str | None) -> None:
        """Join the run going on (this page's, or one another page of this room started: shown here from its start)."""
        run = self.conversation.current_run
        if not self.running and self.conversation.running and run is not None:
            self.show_run(run)
        if self.running and self.run is not None:
            await join(self.run, text, command, self.user)
            await self.controls.keep_last()  # below the user's message
        elif command == "Interrupt":
            await _say("Nothing is running: send your message without Interrupt to start the team.")
        else:
            await self.begin(text)

    async def offer_commands(self) -> None:
        """Give the page its composer's commands: Interrupt while a run is live, Share to the conversation's owner."""
        self.controls.extra = await own_commands(self.conversation, self.user)
        await cl.context.emitter.set_commands(self.controls.commands())

    async def stop_now(self) -> bool:
        """The Stop button: the run ends now and its controls go at once (the status line follows). A read-only
        member of a shared room is told why not (True: nothing else to say)."""
        if self.running and not await self.access.may_write(self.conversation):
            await _say(READ_ONLY)
            return True
        if stopped := self.stop():
            await self.controls.end()
        return stopped

    def stop(self) -> bool:
        """End the run now (Stop): the model call in progress is cancelled, no other made. False if none ran."""
        if self.run is None or not self.running:
            return False
        stop_as(self.run, self.user)
        return True

    async def page_left(self, ws: WebsocketSession | None = None) -> None:  # closed, reloaded, disconnected
        if ws is not None and (page := self.handover.left(ws)) is not None:
            self._handing = asyncio.get_running_loop().create_task(self._hand_to(page))
        await release_when_shown(self)

    async def begin(self, text: str) -> None:
        """Start the team on `text`: here, or in the process of the cluster that drives the conversation now."""
        if self.cluster is None:
            return self.show_run(self.conversation.start(text, author=self.user))
        self.conversation, run = await self.cluster.say(self.conversation, text, self.user)
        self.show_run(run, len(self.conversation.history) if isinstance(run, RemoteRun) else None)

    def show_run(self, run: Run | RemoteRun, shown: int | None = None, skip: int = 0) -> None:
        """Show `run` from its next event: one started here, one another page shows too (a shared room: `skip`
        its events shown so far), or one driven by another process of the cluster (`shown`: how much of the
        conversation's history the page has been shown already)."""
        self._shown = len(self.conversation.history) if shown is None else shown
        self.run = run
        earlier = run.earlier if isinstance(run, RemoteRun) else run.events[:skip]
        self.projection = Projection.of(earlier)
        self.meter.reset()
        self.task = asyncio.get_running_loop().create_task(self._pump(run, skip))
        end_view_on_revoke(self)  # in a cluster, at once however quiet the run

    async def reattach(self, ws: WebsocketSession) -> None:
        """Show the run still in progress in another browser session (a reopened thread), from `on_chat_resume`.
        Chainlit sends the page the thread it read before, replacing every message there: so the display holds, the
        page is sent the thread as shown so far (from memory: the store may be ahead), and the display goes on from
        the next event there (see Handover), which first gets the buttons of every decision still awaited."""
        attaching = self.handover.attach(ws)
        if attaching is None:
            return  # that page has closed already: the run stays where it is shown
        self._gate.clear()

        async def shown_so_far(thread: dict[str, Any]) -> dict[str, Any]:
            await self._idle.wait()  # not in the middle of showing an event: the gate holds the next
            tid = self.conversation.thread_id or str(thread.get("id"))
            return thread_as_shown(thread, tid, self.conversation.history[: self._shown], self.user)

        async def sent() -> None:  # the thread was sent (a second call, from the timer, does nothing)
            timer.cancel()
            await self._hand_to(self.handover.sent(attaching))

        # Never hold the display for good, should Chainlit not send the thread (the page went away first).
        timer = asyncio.get_running_loop().call_later(RESUME_WAIT_S, lambda: asyncio.ensure_future(sent()))
        on_resume_sent(ws, shown_so_far, sent)

    async def _hand_to(self, ws: WebsocketSession | None) -> None:
        """Show the run on page `ws` from the next event (None: not yet, see Handover)."""
        if ws is not None:
            count = self.handover.count
            try:
                await self._adopt(ws)
            finally:
                if count == self.handover.count:  # no page reopened the thread meanwhile
                    self._ws = ws
                    self._gate.set()

    async def _adopt(self, ws: WebsocketSession) -> None:
        """Take the page `ws` over, the display held: it shows the thread as shown so far; the decisions awaited
        get their buttons there."""
        show_on(ws)
        self.streams.clear()  # half-streamed messages belonged to the old page
        self.tools.forget()
        self.controls = LiveControls(self.controls.extra, self.controls.turn)  # a new page, the same turn
        self.meter.reset()
        self.notes = NotesPanel(self.meter)
        await self.offers.clear_page()  # the same tab may connect more than once and still hold the buttons
        await self.drop_buttons()  # and may hold settled ones: their removal went to a socket it had dropped
        # The page has every card under the id the live run gave it (the stored thread's): the same messages.
        for key, ev in [*self.projection.subtasks.items(), *self.projection.waiting.items()]:
            card = self._cards.get(key)
            if card is None:
                author, text = note(ev) or (ev.source, "")
                card = self._cards[key] = cl.Message(content=text, author=author, id=self._card_id(key))
            await self.offers.offer(key, card, actions_for(ev, self._card_id(key)))

    async def drop_buttons(self) -> None:
        """The page drops any button of this thread's decisions it holds (Chainlit's page keeps them across its
        sockets: one that moved to another as a decision was settled keeps what the earlier socket brought)."""
        await self.offers.drop(
            every_decision_button(self.conversation.thread_id or "", self.conversation.history)
        )
        if self.running:
            await self.controls.start(self.controls.turn)

    def approve(self, request_id: str) -> None:
        if self.running and self.run is not None:
            self.run.approve(request_id, actor=self.user)

    async def ask_reason(self, request_id: str) -> None:
        self.awaiting = ("deny", request_id)
        await _say("Why deny it? Type the reason and send it (the agent will see it).")

    async def resolve(self, escalation_id: str, *, choose: int | None = None, proceed: bool = False) -> None:
        """A button on an escalation: pick a position, or let the team continue."""
        if not self.running or self.run is None:
            return
        try:
            self.run.resolve(escalation_id, choose=choose, proceed=proceed, actor=self.user)
        except KeyError:
            await _say("That decision has already been made.")
            return
        # The page that clicked loses the buttons at once, whatever page the run's display is on by the time it
        # shows the decision (a reopened thread hands the display over between pages).
        await self.offers.decided(escalation_id)

    async def ask_own_answer(self, escalation_id: str) -> None:
        self.awaiting = ("write", escalation_id)
        await _say("Type your own answer and send it: the team goes on with it.")

    async def _pump(self, run: Run | RemoteRun, skip: int = 0) -> None:
        show_on()  # keep the run's messages from nesting under the finished on_message step
        await self._gate.wait()  # a page being sent the thread gets the controls once it has it (see _adopt)
        self.controls.extra = await own_commands(self.conversation, self.user)  # a new chat: stored now
        await self.controls.start()
        async for ev in run:
            if skip:  # a run's reader is first given what it showed before: this page has it already
                skip -= 1
                continue
            await self._gate.wait()  # a reopened page is being sent the thread as shown so far
            if await self.access.ended(self.conversation):
                await self.controls.end()
                await _say(REVOKED)
                return
            self._idle.clear()
            try:
                if self._ws is not None:  # the thread was reopened in another session: show it there
                    show_on(self._ws)
                    self._ws = None
                if not isinstance(ev, ChunkEvent):
                    self._shown = index_after(self.conversation.history, ev, self._shown)
                adds = adds_message(ev, self.streams.messages, type(ev) in _SHOW)
                await self.show(ev)
                if adds:
                    await self.controls.keep_last(turn_of(ev))
            except Exception:  # a display glitch must not stop the conversation
                log.exception("could not show %s", ev.type)
            finally:
                self._idle.set()

    async def show(self, ev: Event) -> None:
        """Show one event of the run on this page, after folding it into what the page knows of the run."""
        settled = self.projection.apply(ev)
        await self.streams.before(ev)
        handler = _SHOW.get(type(ev))
        if handler is not None:
            await handler(self, ev, settled)
        else:
            await self._note(ev)

    async def _note(self, ev: Event, *_: Any) -> None:
        shown = note(ev)
        if shown is not None:
            await cl.Message(content=shown[1], author=shown[0]).send()

    def _rating(self, source: str, closing: Event | None = None) -> str | None:
        """The rating step of the message `source` starts now (see _ratings), `closing` the event that ends it if
        that event starts it too. It counts what the page was shown so far: the store may be ahead."""
        tid = self.conversation.thread_id
        if not tid:
            return None
        shown = (e for e in self.conversation.history[: self._shown] if e is not closing)
        return rating_id(tid, source, said_by(shown, source))

    async def _chunk(self, ev: ChunkEvent, _: list[Event]) -> None:
        header = speaker_header(ev.source, ev.turn, self.projection.working.get(ev.source))
        await self.streams.chunk(ev, header, lambda: self._rating(ev.source))

    async def _message(self, ev: MessageEvent, _: list[Event]) -> None:
        # the whole message replaces what was streamed
        msg = await self.streams.take(ev.source, lambda: self._rating(ev.source, ev))
        working = self.projection.working.get(ev.source)
        msg.content = tool_summary_text(ev, working) if ev.kind == "tool_summary" else agent_text(ev, working)
        if ev.kind == "text" and self.conversation.demo_quality(ev.source):  # the embedded model's
            msg.content = demo_marked(msg.content)
        await msg.send()

    async def _abandoned(self, ev: TurnAbandonedEvent, _: list[Event]) -> None:
        msg = await self.streams.take(ev.source, lambda: self._rating(ev.source, ev))
        msg.content = (note(ev) or ("", ""))[1]
        await msg.send()

    async def _tool_call(self, ev: ToolCallEvent, _: list[Event]) -> None:
        if ev.name == ASK_HUMAN:  # a question shows as its own message
            return
        await self.tools.call(ev, pending=awaits_approval(ev, self.projection.waiting.values()))

    async def _file(self, ev: FileEvent, _: list[Event]) -> None:
        await cl.Message(
            content=(note(ev) or ("", ""))[1], author=ev.source, elements=[file_element(ev)]
        ).send()

    # -- approvals, checks, questions, escalations, sub-tasks: messages that change as things are settled --

    async def _approval_decision(self, ev: ApprovalDecisionEvent, _: list[Event]) -> None:
        card = await self._settled(ev.request_id)
        if was_cancelled(ev):  # the run ended while it waited: the card says so, the status line says why
            await self.tools.decided(ev, cancelled=True)
            await cancel_card(card)
            return
        await self.tools.decided(ev)
        await _say(decision_text(ev))

    async def _validation(self, ev: ValidationEvent, _: list[Event]) -> None:
        if ev.passed:
            await self._note(ev)
            return
        msg = await self.streams.take(ev.source, lambda: self._rating(ev.source, ev))
        # the failed attempt stays on screen, closed; the next one streams anew
        msg.content = validation_text(ev, self.projection.working.get(ev.source))
        await msg.send()

    async def _question(self, ev: QuestionEvent, _: list[Event]) -> None:
        await self._card(ev.question_id, cl.Message(content=question_text(ev), author=ev.source))

    async def _answer(self, ev: AnswerEvent, settled: list[Event]) -> None:
        card = await self._settled(ev.question_id)
        asked = settled[0] if settled else None
        if card is not None and isinstance(asked, QuestionEvent):
            card.content = question_text(asked, ev)
            await card.update()

    async def _resolved(self, ev: EscalationResolvedEvent, settled: list[Event]) -> None:
        await self._settled(ev.escalation_id)
        asked = settled[0] if settled else None
        await _say(resolved_text(ev, asked.positions if isinstance(asked, EscalationEvent) else ()))

    def _card_id(self, key: str) -> str:
        return card_step_id(self.conversation.thread_id or "", key)

    async def _card(self, key: str, msg: cl.Message) -> None:
        """Send a message that changes as things are settled, under the id the stored thread gives it: a page
        that reopens the thread shows the same message, and the run goes on changing it there."""
        msg.id = self._card_id(key)
        self._cards[key] = msg
        await msg.send()
        self.offers.sent(key, msg)

    async def _decision(self, ev: ApprovalRequestEvent | EscalationEvent, text: str) -> None:
        key = waiting_key(ev) or ""
        await self._card(
            key, cl.Message(content=text, author=SYSTEM, actions=actions_for(ev, self._card_id(key)))
        )

    async def _settled(self, key: str) -> cl.Message | None:
        """A decision was made: take its buttons away."""
        if self.awaiting is not None and self.awaiting[1] == key:
            self.awaiting = None
        msg = self._cards.pop(key, None)
        await self.offers.withdraw(key, msg)
        return msg

    async def _subtask(self, ev: SubtaskEvent, settled: list[Event]) -> None:
        if ev.status == "started":
            await self._card(ev.subtask_id, cl.Message(content=subtask_text(ev), author=ev.source))
            return
        msg = self._cards.pop(ev.subtask_id, None)
        started = settled[0] if settled else None
        if msg is not None and isinstance(started, SubtaskEvent):
            msg.content = subtask_text(started, ev)
            await msg.update()

    async def _finish(self, result: RunResult, cut: list[Event]) -> None:
        self.tools.forget()
        await self.controls.end()
        for ev in cut:  # what the run left open: decisions lose their buttons, sub-tasks read as cut short
            if isinstance(ev, SubtaskEvent):
                card = self._cards.pop(ev.subtask_id, None)
                if card is not None:
                    card.content = subtask_text(ev, ended=result.stop_reason)
                    await card.update()
            else:
                await self._settled(waiting_key(ev) or "")
        self.awaiting = None
        if self.run is not None and self.run.unsaved:  # the store failed: half-streamed text was never kept
            await self.streams.close_unsaved()
        await self.meter.finish(
            result.prompt_tokens, result.completion_tokens, result.cost_usd, self.conversation
        )
        per_speaker = self.projection.per_speaker()  # the chart's turns are the status line's
        text = closing_text(result, self.run.events if self.run is not None else [], per_speaker, self.user)
        await cl.Message(content=text, author=SYSTEM, elements=usage_chart(per_speaker)).send()


_SHOW: dict[type, Callable[..., Awaitable[None]]] = {
    ChunkEvent: ChatSession._chunk,
    HumanMessageEvent: lambda chat, ev, _: show_human(ev, chat.user),
    HumanQueuedEvent: lambda chat, ev, _: show_queued(ev, chat.user),
    MessageEvent: ChatSession._message,
    TurnAbandonedEvent: ChatSession._abandoned,
    ToolCallEvent: ChatSession._tool_call,
    ToolProgressEvent: lambda chat, ev, _: chat.tools.report(ev),
    ToolResultEvent: lambda chat, ev, _: chat.tools.result(ev),
    FileEvent: ChatSession._file,
    NoteEvent: lambda chat, ev, _: chat.notes.show(ev.source, chat.conversation.notes_board),
    UsageEvent: lambda chat, ev, _: chat.meter.update(
        ev.total_prompt_tokens, ev.total_completion_tokens, ev.cost_usd, chat.conversation
    ),
    RunResult: ChatSession._finish,
    ApprovalRequestEvent: lambda chat, ev, _: chat._decision(ev, approval_text(ev)),
    ApprovalDecisionEvent: ChatSession._approval_decision,
    ValidationEvent: ChatSession._validation,
    QuestionEvent: ChatSession._question,
    AnswerEvent: ChatSession._answer,
    EscalationEvent: lambda chat, ev, _: chat._decision(ev, escalation_text(ev)),
    EscalationResolvedEvent: ChatSession._resolved,
    SubtaskEvent: ChatSession._subtask,
}
"""How each kind of event shows (method, event, what it settled); any other kind shows as its `note`, if any."""


__all__ = ["ChatSession", "commands"]
