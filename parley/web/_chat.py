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

from ..conversation import Conversation
from ..events import (
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    ChunkEvent,
    Event,
    FileEvent,
    MessageEvent,
    RunResult,
    ToolCallEvent,
    ToolResultEvent,
    TurnAbandonedEvent,
    UsageEvent,
)
from ..run import Run
from ._art import usage_chart_svg
from ._format import SYSTEM, agent_text, decision_text, note, speaker_header

log = logging.getLogger("parley.web")
COMMANDS = [
    {"id": "Stop", "icon": "square", "description": "Stop the agents now", "button": True, "persistent": False},
    {"id": "Interrupt", "icon": "zap", "description": "Cut the current turn short with your message",
     "button": True, "persistent": False},
]
METER_EVERY_S = 0.5


class ChatSession:
    """The conversation behind one chat thread, and the messages on screen for its current run."""

    def __init__(self, conversation: Conversation, user: str) -> None:
        self.conversation = conversation
        self.user = user
        self.run: Run | None = None
        self.task: asyncio.Task[None] | None = None
        self.awaiting_reason: str | None = None
        self._streams: dict[tuple[str, int], cl.Message] = {}
        self._tools: dict[str, cl.Step] = {}
        self._approvals: dict[str, cl.Message] = {}
        self._meter: cl.Message | None = None
        self._meter_at = 0.0
        self._ws: WebsocketSession | None = None
        self._approval_events: dict[str, ApprovalRequestEvent] = {}

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.result is None

    async def on_message(self, text: str, command: str | None) -> None:
        text = text.strip()
        if command == "Stop":
            if self.running:
                assert self.run is not None
                self.run.stop()
            else:
                await _say("Nothing is running.")
            return
        if self.awaiting_reason and not command and self.running:
            assert self.run is not None
            request_id, self.awaiting_reason = self.awaiting_reason, None
            self.run.deny(request_id, text, actor=self.user)
            return
        if not text:
            await _say("Type a message first.")
            return
        if command == "Interrupt" and self.running:
            assert self.run is not None
            self.run.interrupt(text)
        elif self.running:
            assert self.run is not None
            self.run.say(text)
        else:
            self.start(text)

    def start(self, text: str) -> None:
        self.run = self.conversation.start(text)
        self._meter = None
        self.task = asyncio.get_running_loop().create_task(self._pump(self.run))

    async def reattach(self, ws: WebsocketSession) -> None:
        """Show the run still in progress in another browser session (a reopened thread)."""
        self._ws = ws
        self._streams.clear()  # half-streamed messages belonged to the old page
        self._tools.clear()
        self._meter = None
        self._approvals.clear()
        for ev in list(self._approval_events.values()):
            await self._show(ev)  # re-offer the buttons of every decision still awaited

    def approve(self, request_id: str) -> None:
        if self.running:
            assert self.run is not None
            self.run.approve(request_id, actor=self.user)

    async def ask_reason(self, request_id: str) -> None:
        self.awaiting_reason = request_id
        await _say("Why deny it? Type the reason and send it (the agent will see it).")

    async def _pump(self, run: Run) -> None:
        local_steps.set(None)  # keep the run's messages from nesting under the finished on_message step
        async for ev in run:
            if self._ws is not None:  # the thread was reopened in another session: show it there
                init_ws_context(self._ws)
                local_steps.set(None)
                self._ws = None
            try:
                await self._show(ev)
            except Exception:  # a display glitch must not stop the conversation
                log.exception("could not show %s", ev.type)

    async def _show(self, ev: Event) -> None:  # noqa: C901 - one branch per event type reads best
        if isinstance(ev, ChunkEvent):
            key = (ev.source, ev.turn)
            msg = self._streams.get(key)
            if msg is None:
                msg = self._streams[key] = cl.Message(content="", author=ev.source)
                await msg.stream_token(speaker_header(ev.source, ev.turn))
            await msg.stream_token(ev.content)
        elif isinstance(ev, MessageEvent):
            msg = self._streams.pop((ev.source, ev.turn), None) or cl.Message(content="", author=ev.source)
            msg.content = agent_text(ev)
            await msg.send()
        elif isinstance(ev, TurnAbandonedEvent):
            msg = self._streams.pop((ev.source, ev.turn), None) or cl.Message(content="", author=ev.source)
            msg.content = (note(ev) or ("", ""))[1]
            await msg.send()
        elif isinstance(ev, ToolCallEvent):
            step = cl.Step(name=ev.name, type="tool", show_input="json")
            step.input = json.dumps(ev.arguments, ensure_ascii=False) if isinstance(ev.arguments, dict) else ev.arguments
            self._tools[ev.call_id] = step
            await step.send()
        elif isinstance(ev, ToolResultEvent):
            step = self._tools.pop(ev.call_id, None)
            if step is not None:
                step.output = ev.content
                step.is_error = ev.is_error
                await step.update()
        elif isinstance(ev, ApprovalRequestEvent):
            actions = [
                cl.Action(name="parley_approve", payload={"request_id": ev.request_id}, label="Approve"),
                cl.Action(name="parley_deny", payload={"request_id": ev.request_id}, label="Deny…"),
            ]
            msg = cl.Message(content=(note(ev) or ("", ""))[1], author=SYSTEM, actions=actions)
            self._approvals[ev.request_id] = msg
            self._approval_events[ev.request_id] = ev
            await msg.send()
        elif isinstance(ev, ApprovalDecisionEvent):
            msg = self._approvals.pop(ev.request_id, None)
            self._approval_events.pop(ev.request_id, None)
            if self.awaiting_reason == ev.request_id:
                self.awaiting_reason = None
            if msg is not None:
                await msg.remove_actions()
            await _say(decision_text(ev))
        elif isinstance(ev, FileEvent):
            await cl.Message(content=(note(ev) or ("", ""))[1], author=ev.source, elements=[file_element(ev)]).send()
        elif isinstance(ev, UsageEvent):
            await self._update_meter(ev)
        elif isinstance(ev, RunResult):
            await self._finish(ev)
        else:
            shown = note(ev)
            if shown is not None:
                await cl.Message(content=shown[1], author=shown[0]).send()

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
        for msg in self._approvals.values():
            await msg.remove_actions()
        self._approvals.clear()
        self._approval_events.clear()
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
        with open(ev.path, "rb") as f:
            return kind(url=data_url(f.read(), ev.mime), name=name, display="inline", mime=ev.mime)
    cl.context.session.files_dir.mkdir(parents=True, exist_ok=True)
    return kind(path=ev.path, name=name, display="inline", mime=ev.mime)


def meter_text(prompt: int, completion: int, cost: float | None, conv: Conversation) -> str:
    selector = conv.meter.by_source().get("selector")
    sel = f" (selector {selector[0] + selector[1]:,})" if selector else ""
    money = "cost unknown" if cost is None else f"${cost:.4f}"
    return f"**Meter** · {prompt:,} prompt + {completion:,} completion tokens{sel} · {money}"


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
