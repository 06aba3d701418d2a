"""The web chat's tool steps: a call opens a step, its progress and log lines update it, the result closes it."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import chainlit as cl

from ..events import ToolCallEvent, ToolProgressEvent, ToolResultEvent
from ._format import tool_log_line, tool_output, tool_progress_line

log = logging.getLogger("parley.web")
PROGRESS_EVERY_S = 0.25
"""A tool's progress shows at most this often (its last state always shows): a server may report thousands."""
LOG_LINES = 20
"""The last log lines of a running tool kept on screen."""


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
        self.progress: dict[str, Progress] = {}
        """What each running tool reported (progress, log lines), by call id."""

    async def call(self, ev: ToolCallEvent) -> None:
        step = cl.Step(name=ev.name, type="tool", show_input="json")
        step.input = (
            json.dumps(ev.arguments, ensure_ascii=False) if isinstance(ev.arguments, dict) else ev.arguments
        )
        self.steps[ev.call_id] = step
        await step.send()

    async def result(self, ev: ToolResultEvent) -> None:
        step = self.steps.pop(ev.call_id, None)
        shown = self.progress.pop(ev.call_id, None)
        if shown is not None and shown.flush is not None:
            shown.flush.cancel()
        if step is not None:
            step.output = tool_output(ev.content, shown.log if shown else ())
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
            self.steps[key] = cl.Step(name=ev.name, type="tool")
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
        step.output = tool_output(shown.progress, shown.log)
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
