"""The web chat's tool steps: a call opens a step, its progress and log lines update it, the result closes it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Sequence

import chainlit as cl

from ..events import (
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    Event,
    MessageEvent,
    SubtaskEvent,
    ToolCallEvent,
    ToolProgressEvent,
    ToolResultEvent,
)
from ._format import speaker_header, tool_log_line, tool_progress_line

log = logging.getLogger("parley.web")
PROGRESS_EVERY_S = 0.25
"""A tool's progress shows at most this often (its last state always shows): a server may report thousands."""
LOG_LINES = 20
"""The last log lines of a running tool kept on screen."""


def plain_output(main: str, log: Sequence[str] = ()) -> str:
    """A tool step's output as plain monospace text (the step's language is "text"): its progress or result,
    then the server's log lines, if any. Never Markdown: lines stay lines, addresses stay text."""
    return "\n".join([main, *log]) if main else "\n".join(log)


def tool_summary_text(ev: MessageEvent, subtask: SubtaskEvent | None = None) -> str:
    """An agent's turn that only called tools: its result is in the tool step above, not repeated here."""
    return speaker_header(ev.source, ev.turn, subtask) + "*Used a tool: its result is in the step above.*"


def awaits_approval(call: ToolCallEvent, waiting: Iterable[Event]) -> bool:
    """Whether a tool call waits for a human's approval (its request came first)."""
    return any(
        isinstance(w, ApprovalRequestEvent) and (w.source, w.name) == (call.source, call.name)
        for w in waiting
    )


class Progress:
    """A running tool's last progress line and log lines, and when they were last shown."""

    def __init__(self) -> None:
        self.progress = ""
        self.log: list[str] = []
        self.at = 0.0
        self.flush: asyncio.TimerHandle | None = None


class ToolSteps:
    """The tool steps on the page for the calls still running, by call id."""

    def __init__(self) -> None:
        self.steps: dict[str, cl.Step] = {}
        self.held: dict[str, ToolCallEvent] = {}
        """Calls waiting for approval, by call id: their step shows once decided (a pending call is not "used")."""
        self.progress: dict[str, Progress] = {}
        """What each running tool reported (progress, log lines), by call id."""

    async def call(self, ev: ToolCallEvent, *, pending: bool = False) -> None:
        if pending:
            self.held[ev.call_id] = ev
            return
        step = cl.Step(name=ev.name, type="tool", show_input="json", language="text")
        step.input = (
            json.dumps(ev.arguments, ensure_ascii=False) if isinstance(ev.arguments, dict) else ev.arguments
        )
        self.steps[ev.call_id] = step
        await step.send()

    async def decided(self, ev: ApprovalDecisionEvent, *, cancelled: bool = False) -> None:
        """A human decided a call held for approval: its step shows now (a denied one closes with the denial);
        a call cancelled by the run's end never ran and shows no step."""
        key = next((k for k, c in self.held.items() if c.name == ev.name), None)
        if key is not None:
            call = self.held.pop(key)
            if not cancelled:
                await self.call(call)

    async def result(self, ev: ToolResultEvent) -> None:
        held = self.held.pop(ev.call_id, None)
        if held is not None:
            await self.call(held)
        step = self.steps.pop(ev.call_id, None)
        shown = self.progress.pop(ev.call_id, None)
        if shown is not None and shown.flush is not None:
            shown.flush.cancel()
        if step is not None:
            step.output = plain_output(ev.content, shown.log if shown else ())
            step.is_error = ev.is_error
            await step.update()

    async def report(self, ev: ToolProgressEvent) -> None:
        """A running tool's progress ("3/10 …") and log lines, inside its step until the result replaces them."""
        key = (
            ev.call_id
            if ev.call_id in self.steps
            else next((k for k, s in reversed(self.steps.items()) if s.name == ev.name), None)
        )
        if key is None:  # its call was shown on another page (a reopened thread): show the tool here
            key = ev.call_id or ev.name
            self.steps[key] = cl.Step(name=ev.name, type="tool", language="text")
            await self.steps[key].send()
        step = self.steps[key]
        shown = self.progress.setdefault(key, Progress())
        if ev.level is not None:
            shown.log.append(tool_log_line(ev))
            del shown.log[:-LOG_LINES]
        else:
            shown.progress = tool_progress_line(ev)
        wait = shown.at + PROGRESS_EVERY_S - time.monotonic()
        if wait > 0:  # shown a moment ago: show the latest state once the moment has passed
            if shown.flush is None:
                shown.flush = asyncio.get_running_loop().call_later(
                    wait, lambda: asyncio.ensure_future(self._update(key, step))
                )
            return
        await self._update(key, step)

    async def _update(self, key: str, step: cl.Step) -> None:
        shown = self.progress.get(key)
        if shown is None or self.steps.get(key) is not step:
            return  # the result came first: it replaced the progress
        shown.flush = None
        shown.at = time.monotonic()
        step.output = plain_output(shown.progress, shown.log)
        try:
            await step.update()
        except Exception:  # a display glitch must not stop the conversation (this may run on a timer)
            log.exception("could not show the progress of %s", step.name)

    def forget(self) -> None:
        """Drop every step (they belong to a page no longer shown, or the run ended)."""
        for shown in self.progress.values():
            if shown.flush is not None:
                shown.flush.cancel()
        self.progress.clear()
        self.steps.clear()
        self.held.clear()
