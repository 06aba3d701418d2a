"""One browser session's conversation: turns parley events into Chainlit messages, live.

The run is driven from a background task so the composer stays enabled: whatever the user
types while agents work reaches `say()` and joins at the next turn. A run outlives its browser
tab: reopening the thread re-attaches the display to the run still going.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import chainlit as cl
from chainlit.context import init_ws_context, local_steps
from chainlit.session import WebsocketSession

from .._human import ASK_HUMAN
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
    MessageEvent,
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
from ..models._meter import STREAM_EVERY_S
from ..run import Run
from ._art import usage_chart_svg
from ._chainlit_fixes import on_resume_sent
from ._datalayer import card_step_id, thread_steps
from ._format import (
    NOTES,
    SYSTEM,
    agent_text,
    approval_text,
    clip,
    decision_text,
    escalation_text,
    meter_text,
    note,
    notes_added_text,
    notes_text,
    position_label,
    question_text,
    resolved_text,
    speaker_header,
    subtask_text,
    tool_log_line,
    tool_output,
    tool_progress_line,
    validation_text,
)

log = logging.getLogger("parley.web")
COMMANDS = [
    {"id": "Stop", "icon": "square", "description": "Stop the agents now", "button": True, "persistent": False},
    {"id": "Interrupt", "icon": "zap", "description": "Cut the current turn short with your message",
     "button": True, "persistent": False},
]
METER_EVERY_S = 0.5
RESUME_WAIT_S = 30.0
"""A reopened page that is never sent its thread (it went away first) holds the run's display this long at most."""
PROGRESS_EVERY_S = 0.25
"""A tool's progress shows at most this often (its last state always shows): a server may report thousands."""
LOG_LINES = 20
"""The last log lines of a running tool kept on screen."""
NOTES_TOOL = "team_notes"


_RELEASING: set[asyncio.Task[None]] = set()


class ChatSession:
    """The conversation behind one chat thread, and the messages on screen for its current run."""

    def __init__(self, conversation: Conversation, user: str) -> None:
        self.conversation = conversation
        self.user = user
        self.run: Run | None = None
        self.task: asyncio.Task[None] | None = None
        self.awaiting: tuple[str, str] | None = None
        """("deny", request id) or ("write", escalation id): the next message typed is the reason or the answer."""
        self._streams: dict[str, cl.Message] = {}
        self._held: dict[str, list[str]] = {}
        """Streamed text not sent yet, per speaker."""
        self._sent_at: dict[str, float] = {}
        """The message each speaker is writing: one at a time per speaker, whatever turn numbers its chunks carry."""
        self._tools: dict[str, cl.Step] = {}
        self._progress: dict[str, _Progress] = {}
        """What each running tool reported (progress, log lines), by call id."""
        self._cards: dict[str, cl.Message] = {}
        """Messages updated in place, by request, question, escalation or sub-task id."""
        self._waiting: dict[str, Event] = {}
        """Approvals, questions and escalations not settled yet: offered again when the thread is reopened."""
        self._subtasks: dict[str, SubtaskEvent] = {}
        self._working: dict[str, SubtaskEvent] = {}
        """Hierarchical pattern: the sub-task each worker is on."""
        self._notes_shown = 0
        self._meter: cl.Message | None = None
        self._meter_at = 0.0
        self._ws: WebsocketSession | None = None
        """The page the run is to be shown on from the next event (a reopened thread), once it has the thread."""
        self._gate = asyncio.Event()
        """Open while the run's events may be shown; closed while a reopened page is being sent the thread."""
        self._gate.set()
        self._idle = asyncio.Event()
        """Set while no event is being shown."""
        self._idle.set()
        self._attaching = 0
        """Counts reopened pages: only the latest is shown the run."""
        self._shown = len(conversation.history) if conversation is not None else 0
        """How much of the conversation's history the page has been shown (chunks aside)."""

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.result is None

    @property
    def showing(self) -> bool:
        """The run is going, or the page is still being shown its last events (the run's result comes first)."""
        return self.running or (self.task is not None and not self.task.done())

    async def on_message(self, text: str, command: str | None) -> None:
        text = text.strip()
        if command == "Stop":
            if not self.stop():
                await _say("Nothing is running.")
            return
        if self.awaiting and not command and self.running:
            await self._settle_awaited(text)
            return
        if not text:
            await _say("Type a message first.")
            return
        if command == "Interrupt" and self.running:
            assert self.run is not None
            self.run.interrupt(text)
        elif self.running:
            assert self.run is not None
            questions = self.run.pending_questions
            if questions and not command:  # a role asked the human: what they type next is the answer
                self.run.answer(questions[0].question_id, text, actor=self.user)
                return
            self.run.say(text)
            if self.run.pending_escalations:
                await _say("*The team waits for your decision above; your message joins once it is made.*")
        else:
            self.start(text)

    async def _settle_awaited(self, text: str) -> None:
        assert self.run is not None and self.awaiting is not None
        kind, key = self.awaiting
        if kind == "write" and not text:
            await _say("Type your answer first: the team goes on with it.")
            return
        self.awaiting = None
        try:
            if kind == "deny":
                self.run.deny(key, text, actor=self.user)
            else:
                self.run.resolve(key, text=text, actor=self.user)
        except KeyError:
            await _say("That decision has already been made.")

    def stop(self) -> bool:
        """End the run now (the Stop command, and Chainlit's own stop button): the model call in progress is
        cancelled and no other is made. False if nothing was running."""
        if not self.running:
            return False
        assert self.run is not None
        self.run.stop()
        return True

    async def page_left(self) -> None:
        """The page showing this chat went away (closed, reloaded, or lost its connection). An idle conversation
        lets its MCP servers go at once; a running one goes on, and lets them go when its run has been shown,
        unless a page reopened the thread meanwhile."""
        if not self.showing:
            await self.conversation.release()
            return
        pages = self._attaching
        task = self.task
        assert task is not None

        def done(_: asyncio.Task[None]) -> None:
            if pages == self._attaching and not self.showing:
                releasing = asyncio.get_running_loop().create_task(self.conversation.release())
                _RELEASING.add(releasing)  # held until done: the loop keeps only a weak reference to a task
                releasing.add_done_callback(_RELEASING.discard)

        task.add_done_callback(done)

    def start(self, text: str) -> None:
        self._shown = len(self.conversation.history)
        self.run = self.conversation.start(text)
        self._meter = None
        self.task = asyncio.get_running_loop().create_task(self._pump(self.run))

    async def reattach(self, ws: WebsocketSession) -> None:
        """Show the run still in progress in another browser session (a reopened thread).

        Called from `on_chat_resume`. Chainlit read the stored thread before, and sends it to the page after,
        replacing every message there: what the run showed in between would be lost. So the run's display
        holds here; the page is sent the thread as shown so far (every event up to the one last shown, from
        memory: the store may be ahead), and the display goes on from the next event on the new page, which
        first gets the buttons of every decision still awaited."""
        self._attaching += 1
        attaching = self._attaching
        self._gate.clear()
        done = False

        async def shown_so_far(thread: dict[str, Any]) -> dict[str, Any]:
            await self._idle.wait()  # not in the middle of showing an event: the gate holds the next
            tid = self.conversation.thread_id or str(thread.get("id"))
            return thread | {"steps": thread_steps(tid, self.conversation.history[: self._shown])}

        async def sent() -> None:
            nonlocal done
            if done or attaching != self._attaching:  # a page reopened later waits for its own thread
                return
            done = True
            timer.cancel()
            try:
                await self._adopt(ws)
            finally:
                if attaching == self._attaching:
                    self._ws = ws
                    self._gate.set()

        # Never hold the display for good, should Chainlit not send the thread (the page went away first).
        timer = asyncio.get_running_loop().call_later(RESUME_WAIT_S, lambda: asyncio.ensure_future(sent()))
        on_resume_sent(ws, shown_so_far, sent)

    async def _adopt(self, ws: WebsocketSession) -> None:
        """Take the page `ws` over, the display held: it shows the thread as shown so far; the decisions awaited
        get their buttons there."""
        init_ws_context(ws)
        self._streams.clear()  # half-streamed messages belonged to the old page
        self._held.clear()
        self._tools.clear()
        self._forget_progress()
        self._meter = None
        self._notes_shown = 0
        stale, self._cards = list(self._cards.values()), {}
        for old in stale:  # the same tab may reconnect more than once and still hold the buttons sent before
            await old.remove_actions()
        tid = self.conversation.thread_id or ""
        for key, ev in [*self._subtasks.items(), *self._waiting.items()]:
            actions = approval_actions(ev) if isinstance(ev, ApprovalRequestEvent) else (
                escalation_actions(ev) if isinstance(ev, EscalationEvent) else [])
            author, text = note(ev) or (ev.source, "")
            msg = self._cards[key] = cl.Message(content=text, author=author, actions=actions, id=card_step_id(tid, key))
            for action in actions:
                await action.send(for_id=msg.id)

    def approve(self, request_id: str) -> None:
        if self.running:
            assert self.run is not None
            self.run.approve(request_id, actor=self.user)

    async def ask_reason(self, request_id: str) -> None:
        self.awaiting = ("deny", request_id)
        await _say("Why deny it? Type the reason and send it (the agent will see it).")

    async def resolve(self, escalation_id: str, *, choose: int | None = None, proceed: bool = False) -> None:
        """A button on an escalation: pick a position, or let the team continue."""
        if not self.running:
            return
        assert self.run is not None
        try:
            self.run.resolve(escalation_id, choose=choose, proceed=proceed, actor=self.user)
        except KeyError:
            await _say("That decision has already been made.")
            return
        # The page that clicked loses the buttons at once, whatever page the run's display is on by the time it
        # shows the decision (a reopened thread hands the display over between pages).
        card = self._cards.get(escalation_id)
        if card is not None and card.actions:
            await card.remove_actions()

    async def ask_own_answer(self, escalation_id: str) -> None:
        self.awaiting = ("write", escalation_id)
        await _say("Type your own answer and send it: the team goes on with it.")

    async def _pump(self, run: Run) -> None:
        local_steps.set(None)  # keep the run's messages from nesting under the finished on_message step
        async for ev in run:
            await self._gate.wait()  # a reopened page is being sent the thread as shown so far
            self._idle.clear()
            try:
                if self._ws is not None:  # the thread was reopened in another session: show it there
                    init_ws_context(self._ws)
                    local_steps.set(None)
                    self._ws = None
                if not isinstance(ev, ChunkEvent):
                    self._shown = _index_after(self.conversation.history, ev, self._shown)
                await self._show(ev)
            except Exception:  # a display glitch must not stop the conversation
                log.exception("could not show %s", ev.type)
            finally:
                self._idle.set()

    async def _show(self, ev: Event) -> None:  # noqa: C901 - one branch per event type reads best
        if isinstance(ev, ChunkEvent):
            msg = self._streams.get(ev.source)
            if msg is None:
                msg = self._streams[ev.source] = cl.Message(content="", author=ev.source)
                await msg.stream_token(speaker_header(ev.source, ev.turn, self._working.get(ev.source)))
            # The engine already passes text on at most every STREAM_EVERY_S; under load, pieces still pile up
            # in the run's queue while this session is busy, and each socket message costs the server more than
            # the rest of the chat: send what piled up as one. What is held back goes with the next piece or the
            # whole message.
            held = self._held.setdefault(ev.source, [])
            held.append(ev.content)
            now = time.monotonic()
            if now - self._sent_at.get(ev.source, 0.0) >= STREAM_EVERY_S:
                await msg.stream_token("".join(held))
                held.clear()
                self._sent_at[ev.source] = now
        elif isinstance(ev, MessageEvent):
            self._held.pop(ev.source, None)  # the whole message replaces what was streamed
            msg = self._streams.pop(ev.source, None) or cl.Message(content="", author=ev.source)
            msg.content = agent_text(ev, self._working.get(ev.source))
            await msg.send()
        elif isinstance(ev, TurnAbandonedEvent):
            self._held.pop(ev.source, None)
            msg = self._streams.pop(ev.source, None) or cl.Message(content="", author=ev.source)
            msg.content = (note(ev) or ("", ""))[1]
            await msg.send()
        elif isinstance(ev, ToolCallEvent):
            if ev.name == ASK_HUMAN:
                return  # the question shows as its own message
            step = cl.Step(name=ev.name, type="tool", show_input="json")
            step.input = json.dumps(ev.arguments, ensure_ascii=False) if isinstance(ev.arguments, dict) else ev.arguments
            self._tools[ev.call_id] = step
            await step.send()
        elif isinstance(ev, ToolProgressEvent):
            await self._show_progress(ev)
        elif isinstance(ev, ToolResultEvent):
            step = self._tools.pop(ev.call_id, None)
            shown = self._progress.pop(ev.call_id, None)
            if shown is not None and shown.flush is not None:
                shown.flush.cancel()
            if step is not None:
                step.output = tool_output(ev.content, shown.log if shown else ())
                step.is_error = ev.is_error
                await step.update()
            if ev.name == NOTES_TOOL:
                await self._show_notes(ev.source)
        elif isinstance(ev, FileEvent):
            await cl.Message(content=(note(ev) or ("", ""))[1], author=ev.source, elements=[file_element(ev)]).send()
        elif isinstance(ev, UsageEvent):
            await self._update_meter(ev)
        elif isinstance(ev, RunResult):
            await self._finish(ev)
        elif not await self._show_decision(ev):
            shown = note(ev)
            if shown is not None:
                await cl.Message(content=shown[1], author=shown[0]).send()

    async def _show_progress(self, ev: ToolProgressEvent) -> None:
        """A running tool's progress ("3/10 …") and log lines, inside its step until the result replaces them."""
        key = ev.call_id if ev.call_id in self._tools else next(
            (k for k, s in reversed(self._tools.items()) if s.name == ev.name), None)
        if key is None:  # its call was shown on another page (a reopened thread): show the tool here
            key = ev.call_id or ev.name
            self._tools[key] = cl.Step(name=ev.name, type="tool")
            await self._tools[key].send()
        step = self._tools[key]
        shown = self._progress.setdefault(key, _Progress())
        if ev.level is not None:
            shown.log.append(tool_log_line(ev))
            del shown.log[:-LOG_LINES]
        else:
            shown.progress = tool_progress_line(ev)
        wait = shown.at + PROGRESS_EVERY_S - time.monotonic()
        if wait > 0:  # shown a moment ago: show the latest state once the moment has passed
            if shown.flush is None:
                shown.flush = asyncio.get_running_loop().call_later(
                    wait, lambda: asyncio.ensure_future(self._update_progress(key, step)))
            return
        await self._update_progress(key, step)

    async def _update_progress(self, key: str, step: cl.Step) -> None:
        shown = self._progress.get(key)
        if shown is None or self._tools.get(key) is not step:
            return  # the result came first: it replaced the progress
        shown.flush = None
        shown.at = time.monotonic()
        step.output = tool_output(shown.progress, shown.log)
        try:
            await step.update()
        except Exception:  # a display glitch must not stop the conversation (this may run on a timer)
            log.exception("could not show the progress of %s", step.name)

    def _forget_progress(self) -> None:
        for shown in self._progress.values():
            if shown.flush is not None:
                shown.flush.cancel()
        self._progress.clear()

    async def _show_decision(self, ev: Event) -> bool:
        """Approvals, checks, questions, escalations, sub-tasks: messages that change as things are settled."""
        if isinstance(ev, ApprovalRequestEvent):
            await self._card(ev.request_id, ev, cl.Message(content=approval_text(ev), author=SYSTEM,
                                                           actions=approval_actions(ev)))
        elif isinstance(ev, ApprovalDecisionEvent):
            await self._settled(ev.request_id)
            await _say(decision_text(ev))
        elif isinstance(ev, ValidationEvent) and not ev.passed:
            msg = self._streams.pop(ev.source, None) or cl.Message(content="", author=ev.source)
            msg.content = validation_text(ev, self._working.get(ev.source))  # the failed attempt stays on screen, closed; the next one streams anew
            await msg.send()
        elif isinstance(ev, QuestionEvent):
            await self._card(ev.question_id, ev, cl.Message(content=question_text(ev), author=ev.source))
        elif isinstance(ev, AnswerEvent):
            asked = self._waiting.get(ev.question_id)
            card = await self._settled(ev.question_id)
            if card is not None and isinstance(asked, QuestionEvent):
                card.content = question_text(asked, ev)
                await card.update()
        elif isinstance(ev, EscalationEvent):
            await self._card(ev.escalation_id, ev, cl.Message(content=escalation_text(ev), author=SYSTEM,
                                                              actions=escalation_actions(ev)))
        elif isinstance(ev, EscalationResolvedEvent):
            asked = self._waiting.get(ev.escalation_id)
            await self._settled(ev.escalation_id)
            await _say(resolved_text(ev, asked.positions if isinstance(asked, EscalationEvent) else ()))
        elif isinstance(ev, SubtaskEvent):
            await self._show_subtask(ev)
        else:
            return False
        return True

    async def _card(self, key: str, ev: Event, msg: cl.Message) -> None:
        self._cards[key] = msg
        self._waiting[key] = ev
        await msg.send()

    async def _settled(self, key: str) -> cl.Message | None:
        """A decision was made: take its buttons away."""
        self._waiting.pop(key, None)
        if self.awaiting is not None and self.awaiting[1] == key:
            self.awaiting = None
        msg = self._cards.pop(key, None)
        if msg is not None and msg.actions:
            await msg.remove_actions()
        return msg

    async def _show_subtask(self, ev: SubtaskEvent) -> None:
        if ev.status == "started":
            self._subtasks[ev.subtask_id] = self._working[ev.worker] = ev
            msg = self._cards[ev.subtask_id] = cl.Message(content=subtask_text(ev), author=ev.source)
            await msg.send()
            return
        started = self._subtasks.pop(ev.subtask_id, None)
        if started is None:
            return
        if self._working.get(started.worker) is started:
            del self._working[started.worker]
        msg = self._cards.pop(ev.subtask_id, None)
        if msg is not None:
            msg.content = subtask_text(started, ev)
            await msg.update()

    async def _show_notes(self, role: str) -> None:
        """The team's shared notes, in the side panel, whenever one is added; the note in the chat reopens it."""
        notes = self.conversation.notes_board
        if len(notes) == self._notes_shown:
            return
        self._notes_shown = len(notes)
        board = notes_text(notes)
        await cl.Message(content=notes_added_text(role, notes), author=SYSTEM,
                         elements=[cl.Text(name=NOTES, content=board, display="side")]).send()
        await cl.ElementSidebar.set_elements([cl.Text(name="team-notes", content=board)], key=f"notes-{len(notes)}")
        await cl.ElementSidebar.set_title(f"{NOTES} · {len(notes)}")  # after the elements, or it is lost

    async def _update_meter(self, ev: UsageEvent) -> None:
        now = time.monotonic()
        if self._meter is not None and now - self._meter_at < METER_EVERY_S:
            return
        self._meter_at = now
        text = meter_text(ev.total_prompt_tokens, ev.total_completion_tokens, ev.cost_usd, self.conversation)
        if self._meter is None:
            self._meter = cl.Message(content=text, author=SYSTEM)
            await self._meter.send()
        else:
            self._meter.content = text
            await self._meter.update()

    async def _finish(self, result: RunResult) -> None:
        self._forget_progress()
        for key in list(self._waiting):
            await self._settled(key)
        self.awaiting = None
        for key, started in self._subtasks.items():  # cut short by a stop, a time-out or an error
            card = self._cards.pop(key, None)
            if card is not None:
                card.content = subtask_text(started, ended=result.stop_reason)
                await card.update()
        self._working.clear()
        self._subtasks.clear()
        if self.run is not None and self.run.unsaved:  # the store failed: half-streamed text was never kept
            for source, msg in list(self._streams.items()):
                msg.content += "".join(self._held.pop(source, [])) + "\n\n*(not saved: saving the conversation failed)*"
                await msg.send()
            self._streams.clear()
        if self._meter is not None:
            self._meter.content = meter_text(result.prompt_tokens, result.completion_tokens, result.cost_usd,
                                             self.conversation)
            await self._meter.update()
        rows = per_speaker(self.conversation, self.run)
        elements = []
        svg = usage_chart_svg(rows)
        if svg:
            elements.append(cl.Image(url=data_url(svg.encode(), "image/svg+xml"), name="tokens-per-speaker.svg",
                                     display="inline", mime="image/svg+xml"))
        await cl.Message(content=(note(result) or ("", ""))[1], author=SYSTEM, elements=elements).send()


def _index_after(history: list[Event], ev: Event, default: int) -> int:
    """Where `ev` ends in the history (it was added last, or a few events before the last)."""
    for i in range(len(history) - 1, -1, -1):
        if history[i] is ev:
            return i + 1
    return default


class _Progress:
    """A running tool's last progress line and log lines, and when they were last shown."""

    def __init__(self) -> None:
        self.progress = ""
        self.log: list[str] = []
        self.at = 0.0
        self.flush: asyncio.TimerHandle | None = None


def approval_actions(ev: ApprovalRequestEvent) -> list[cl.Action]:
    return [
        cl.Action(name="parley_approve", payload={"request_id": ev.request_id}, label="Approve"),
        cl.Action(name="parley_deny", payload={"request_id": ev.request_id}, label="Deny…"),
    ]


def escalation_actions(ev: EscalationEvent) -> list[cl.Action]:
    """A button per position, then Continue and Write my own…"""
    key = {"escalation_id": ev.escalation_id}
    picks = [cl.Action(name="parley_pick", payload=key | {"choose": i}, label=position_label(i, p.who),
                       tooltip=clip(p.text, 200), icon="check") for i, p in enumerate(ev.positions, 1)]
    return [
        *picks,
        cl.Action(name="parley_continue", payload=key, label="Continue", tooltip="The team goes on as it is",
                  icon="play"),
        cl.Action(name="parley_write", payload=key, label="Write my own…",
                  tooltip="Type the answer the team goes on with", icon="pencil"),
    ]


INLINE_LIMIT = 2_000_000


def data_url(content: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode()}"


def file_element(ev: FileEvent) -> cl.Element:
    """Pictures inline; anything else as a download.

    Elements travel as data URLs where they are small enough: Chainlit keeps saved element
    content under `<app root>/.files`, which it deletes when any server of the same checkout
    stops (two replicas, or `make run` twice).
    """
    name = ev.name.replace("/", "_")
    kind = cl.Image if ev.mime.startswith("image/") else cl.File
    if ev.size <= INLINE_LIMIT:
        # A download carries no type a browser would render (a page, a script): the name says what it is.
        # Larger files go through /project/file/, where parley's guard does the same (see _guard).
        shown = ev.mime if kind is cl.Image or ev.mime.split(";")[0] == "text/plain" else "application/octet-stream"
        with open(ev.path, "rb") as f:
            return kind(url=data_url(f.read(), shown), name=name, display="inline", mime=shown)
    cl.context.session.files_dir.mkdir(parents=True, exist_ok=True)
    return kind(path=ev.path, name=name, display="inline", mime=ev.mime)


def per_speaker(conv: Conversation, run: Run | None) -> list[tuple[str, int, int, int]]:
    """(speaker, prompt, completion, turns) for this run, selector included."""
    if run is None:
        return []
    usage: dict[str, list[int]] = {}
    for ev in run.events:
        if isinstance(ev, UsageEvent):
            row = usage.setdefault(ev.source, [0, 0, 0])
            row[0] += ev.prompt_tokens
            row[1] += ev.completion_tokens
        elif isinstance(ev, MessageEvent):
            usage.setdefault(ev.source, [0, 0, 0])[2] += 1
    return [(name, p, c, t) for name, (p, c, t) in usage.items()]


async def _say(text: str) -> None:
    await cl.Message(content=text, author=SYSTEM).send()


def commands() -> list[dict[str, Any]]:
    return COMMANDS
