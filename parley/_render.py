"""Terminal rendering of run events for `parley run`."""

from __future__ import annotations

import json
import sys
import zlib
from typing import TextIO

from .events import (
    AnswerEvent,
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    ChunkEvent,
    ErrorEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    FileEvent,
    HumanMessageEvent,
    HumanQueuedEvent,
    MessageEvent,
    NoticeEvent,
    QuestionEvent,
    RunResult,
    RunStartedEvent,
    SpeakerSelectedEvent,
    SubtaskEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnAbandonedEvent,
    ValidationEvent,
    VoteEvent,
)

_COLORS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
CLIP = 600


def summary(result: RunResult) -> str:
    """The one-line summary printed at the end of a run."""
    cost = "cost unknown" if result.cost_usd is None else f"${result.cost_usd:.4f}"
    why = f"{result.stop_reason} ({result.detail})" if result.detail else result.stop_reason
    parts = [
        f"stopped: {why}",
        f"{result.turns} turns",
        f"{result.prompt_tokens:,} prompt + {result.completion_tokens:,} completion tokens",
        cost,
    ]
    line = " · ".join(parts)
    if result.undelivered:
        line += f" · {len(result.undelivered)} message(s) kept for the next run"
    return line


class Renderer:
    """Prints a conversation as it happens: speakers, streamed text, tool calls, a summary."""

    def __init__(self, out: TextIO | None = None, color: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.color = self.out.isatty() if color is None else color
        self._streaming: str | None = None
        self._held: set[str] = set()
        """Speakers streaming while another one is: their text is shown whole when their message ends."""

    def _c(self, text: str, code: int) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def _name(self, name: str) -> str:
        return self._c(name, _COLORS[zlib.crc32(name.encode()) % len(_COLORS)])

    def _dim(self, text: str) -> str:
        return self._c(text, 2)

    def _line(self, text: str) -> None:
        if self._streaming is not None:  # another line cuts in: the cut message is shown whole when it ends
            self.out.write(" …\n")
            self._held.add(self._streaming)
            self._streaming = None
        self.out.write(text + "\n")
        self.out.flush()

    def show(self, ev: Event) -> None:  # noqa: C901 - one branch per event type reads best
        if isinstance(ev, RunStartedEvent):
            self._line(self._dim(f"parley · {ev.team} · {ev.pattern} · model {ev.model} · roles {', '.join(ev.roles)}"))
        elif isinstance(ev, NoticeEvent):
            self._line(self._c(f"! {ev.content}", 33))
        elif isinstance(ev, HumanMessageEvent):
            label = {"task": "task", "say": "you", "interrupt": "you (interrupt)"}[ev.mode]
            self._line(f"{self._c(label, 1)}: {ev.content}")
        elif isinstance(ev, HumanQueuedEvent):
            self._line(self._dim(f"(queued: joins {'now' if ev.mode == 'interrupt' else 'after the current turn'})"))
        elif isinstance(ev, SpeakerSelectedEvent) and ev.fallback:
            self._line(self._dim(f"(selector: {ev.content})"))
        elif isinstance(ev, ChunkEvent):
            if ev.source in self._held or (self._streaming not in (None, ev.source)):
                self._held.add(ev.source)  # parallel speakers (fan-out, votes): one live line at a time
                return
            if self._streaming != ev.source:
                if self._streaming is not None:
                    self.out.write("\n")
                self.out.write(f"[{ev.turn}] {self._name(ev.source)}: ")
                self._streaming = ev.source
            self.out.write(ev.content)
            self.out.flush()
        elif isinstance(ev, MessageEvent):
            self._held.discard(ev.source)
            if self._streaming == ev.source and ev.kind == "text":
                self.out.write("\n")
                self._streaming = None
                self.out.flush()
            else:
                tag = " (tool result)" if ev.kind == "tool_summary" else ""
                self._line(f"[{ev.turn}] {self._name(ev.source)}{tag}: {_clip(ev.content)}")
        elif isinstance(ev, ToolCallEvent):
            args = json.dumps(ev.arguments) if isinstance(ev.arguments, dict) else ev.arguments
            self._line(self._dim(f"    → {ev.source} calls {ev.name} {args}"))
        elif isinstance(ev, ToolResultEvent):
            mark = "✗" if ev.is_error else "←"
            self._line(self._dim(f"    {mark} {ev.name}: {_clip(ev.content, 300)}"))
        elif isinstance(ev, ApprovalRequestEvent):
            self._line(self._c(f"? {ev.source} asks to call {ev.name} {json.dumps(ev.arguments)}: needs approval", 33))
        elif isinstance(ev, ApprovalDecisionEvent):
            verdict = "approved" if ev.approved else "denied"
            because = f" ({ev.reason})" if ev.reason else ""
            self._line(self._c(f"  {ev.name} {verdict} by {ev.actor}{because}", 32 if ev.approved else 31))
        elif isinstance(ev, FileEvent):
            self._line(self._dim(f"    ⇣ {ev.source} wrote {ev.name} ({ev.size:,} bytes): {ev.path}"))
        elif isinstance(ev, TurnAbandonedEvent):
            self._line(self._dim(f"    ({ev.source}'s turn abandoned: {ev.reason})"))
        elif isinstance(ev, ErrorEvent):
            self._line(self._c(f"error in {ev.source}: {ev.error_type}: {ev.content}", 31))
        elif isinstance(ev, RunResult):
            self._line(self._dim("── ") + summary(ev))
        else:
            self._show_decision(ev)

    def _show_decision(self, ev: Event) -> None:
        """The events of the conflict-resolution ladder and of the hierarchical and consensus patterns."""
        if isinstance(ev, ValidationEvent):
            if ev.passed:
                self._line(self._c(f"    ✓ {ev.source}'s answer passes its checks", 32))
            else:
                self._line(self._c(f"    ✗ {ev.source}'s answer fails its checks (attempt {ev.attempt} of "
                                   f"{ev.retries + 1}): " + "; ".join(ev.problems), 31))
        elif isinstance(ev, QuestionEvent):
            self._line(self._c(f"? {ev.source} asks you: {ev.content}", 33))
        elif isinstance(ev, AnswerEvent):
            how = "no answer in time; default" if ev.timed_out else f"answered by {ev.actor}"
            self._line(self._dim(f"  ({how}: {_clip(ev.content, 200)})"))
        elif isinstance(ev, EscalationEvent):
            self._line(self._c(f"‼ escalation ({ev.kind}): {ev.content}", 33))
            for i, pos in enumerate(ev.positions, 1):
                self._line(f"   {i}. {self._name(pos.who)}: {_clip(pos.text, 300)}")
        elif isinstance(ev, EscalationResolvedEvent):
            what = {"choose": f"position {ev.choice} chosen", "write": "answer written", "continue": "team continues",
                    "unresolved": "left unresolved"}[ev.decision]
            self._line(self._c(f"  escalation settled by {ev.actor}: {what}", 32 if ev.decision != "unresolved" else 31))
        elif isinstance(ev, SubtaskEvent):
            if ev.status == "started":
                self._line(self._dim(f"    ↳ {ev.source} → {ev.worker}: {_clip(ev.task, 200)}"))
            else:
                self._line(self._dim(f"    ↲ {ev.worker} {'finished' if ev.status == 'done' else 'failed'} its sub-task"))
        elif isinstance(ev, VoteEvent):
            self._line(self._c(f"  ⚖ {ev.content}", 36))


def _clip(text: str, limit: int = CLIP) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
