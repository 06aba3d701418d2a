"""Terminal rendering of run events for `parley run`."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import zlib
from collections.abc import Callable
from typing import Any, TextIO

from ._outcome import ended_in_words, shows_turn, spent
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
    NoteEvent,
    NoticeEvent,
    QuestionEvent,
    RunResult,
    RunStartedEvent,
    SpeakerSelectedEvent,
    SubtaskEvent,
    ToolCallEvent,
    ToolProgressEvent,
    ToolResultEvent,
    TurnAbandonedEvent,
    ValidationEvent,
    VoteEvent,
)
from .projection import Projection

_COLORS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
STYLES = frozenset({0, 1, 2, *_COLORS})
"""The SGR codes parley itself writes (`ESC [ code m`): bold, dim, its colours and the reset. Nothing else
that starts with ESC ever reaches the terminal."""
CLIP = 600
CALL_CLIP = 200
"""Arguments longer than this are shown at the approval prompt clipped, with a digest of the whole."""

_BIDI = r"\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_HIDDEN = r"\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI
# C0 and C1 controls (ESC starts cursor moves, screen clears, OSC title and clipboard writes; CSI 8m hides
# what follows; CR overwrites the line), bidi marks and overrides (text that reads otherwise than it is stored),
# line separators, and lone surrogates (which would crash the write).
_UNSAFE = re.compile(f"[{_HIDDEN}]")
_UNSAFE_IN_LINE = re.compile(f"[\n\t{_HIDDEN}]")
_FOREIGN = re.compile(
    r"\x1b(?!\[(?:" + "|".join(str(c) for c in sorted(STYLES)) + r")m)"
    r"|[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f" + _BIDI + "]"
)
"""What the last check before the terminal escapes: any ESC but parley's own styling, and the other controls."""


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object, *, one_line: bool = False) -> str:
    """`text` safe to write to a terminal: control characters and bidi overrides written out as `\\x1b`,
    `\\u202e` (visible, never obeyed). Newlines and tabs stay unless `one_line` (names, ids, arguments: a
    newline there could start a forged line). Used on every string the renderer did not write itself:
    model text, tool names, arguments and results, file names, error and question texts."""
    text = str(text).replace("\r\n", "\n")
    return (_UNSAFE_IN_LINE if one_line else _UNSAFE).sub(_shown, text)


def call_text(name: str, arguments: object, *, clip: int | None = None) -> str:
    """A tool call as the operator sees it: the tool's name and its arguments as JSON (non-ASCII escaped, so a
    string that is not an object shows its quotes and escapes too). Arguments longer than `clip` are cut,
    followed by their length and a SHA-256 digest of the whole, which the full line shown before also carries."""
    args = json.dumps(arguments)
    digest = (
        f" ({len(args):,} characters, sha256 {hashlib.sha256(args.encode()).hexdigest()[:16]})"
        if len(args) > CALL_CLIP
        else ""
    )
    if clip is not None and len(args) > clip:
        args = args[: clip - 1] + "…"
    return f"{visible(name, one_line=True)} {visible(args, one_line=True)}{digest}"


def progress_text(ev: ToolProgressEvent) -> str:
    """A running tool's report in a few words: `2/5 copying`, `40% ...`, or `[warning] the line`."""
    if ev.level is not None:
        return f"[{ev.level}] {_clip(ev.content, 300)}"
    if ev.progress is None:
        return _clip(ev.content, 300)
    done = f"{ev.progress:g}/{ev.total:g}" if ev.total else f"{ev.progress:g}"
    return f"{done} {_clip(ev.content, 300)}".strip()


def summary(result: RunResult, turns: int | None = None, at_turn: int | None = None) -> str:
    """The one-line summary printed at the end of a run: how it ended in words, then what it spent.
    `turns`: the turns the run showed, when counted apart from the result; `at_turn`: the turn it reached."""
    return f"{ended_in_words(result.stop_reason, result.detail, at_turn)} · {spent(result, turns)}"


class Renderer:
    """Prints a conversation as it happens: speakers, streamed text, tool calls, a summary."""

    def __init__(self, out: TextIO | None = None, color: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.color = self.out.isatty() if color is None else color
        self._streaming: str | None = None
        """The speaker whose text is shown live, as it comes."""
        self._open: dict[str, tuple[int, str]] = {}
        """Speakers writing a message, with its turn and the text so far (parallel speakers: one shown live)."""
        self._cut: set[str] = set()
        """Speakers whose live line another line cut short: their message is shown whole when it ends."""
        self._done: list[MessageEvent] = []
        """Messages finished before an earlier turn's: each waits for it, so turns show in their order."""
        self.projection = Projection()
        """What the run's events add up to so far (what a decision settles: the escalation it resolves)."""
        self._settled: list[Event] = []
        self._at_turn = 0
        """The highest turn an agent's event showed: where a stopped run was."""

    def _c(self, text: str, code: int) -> str:
        text = visible(text)  # whatever is styled is visible text: only parley's own sequences go around it
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def _name(self, name: str) -> str:
        name = visible(name, one_line=True)
        return self._c(name, _COLORS[zlib.crc32(name.encode()) % len(_COLORS)])

    def _dim(self, text: str) -> str:
        return self._c(text, 2)

    def _line(self, text: str) -> None:
        if self._streaming is not None:  # another line cuts in: the cut message is shown whole when it ends
            self._write(" …\n")
            self._cut.add(self._streaming)
            self._streaming = None
        self._write(text + "\n")
        self.out.flush()

    def _write(self, text: str) -> None:
        """The one way out to the terminal. Each string from outside parley went through `visible` already; this
        last check makes sure nothing but parley's own styling (`STYLES`) starts with ESC, whatever a future
        line forgets."""
        self.out.write(_FOREIGN.sub(_shown, text))

    def show(self, ev: Event) -> None:
        """Print one event of the run (events with nothing to say print nothing)."""
        self._settled = self.projection.apply(ev)
        if shows_turn(ev):
            self._at_turn = max(self._at_turn, ev.turn)
        shown = _SHOWN.get(type(ev))
        if shown is not None:
            shown(self, ev)

    def _started(self, ev: RunStartedEvent) -> None:
        self._line(
            self._dim(f"parley · {ev.team} · {ev.pattern} · model {ev.model} · roles {', '.join(ev.roles)}")
        )

    def _notice(self, ev: NoticeEvent) -> None:
        self._line(self._c(f"! {ev.content}", 33))

    def _human(self, ev: HumanMessageEvent) -> None:
        label = {"task": "task", "say": "you", "interrupt": "you (interrupt)"}[ev.mode]
        self._line(f"{self._c(label, 1)}: {visible(ev.content)}")

    def _queued(self, ev: HumanQueuedEvent) -> None:
        self._line(
            self._dim(f"(queued: joins {'now' if ev.mode == 'interrupt' else 'after the current turn'})")
        )

    def _speaker(self, ev: SpeakerSelectedEvent) -> None:
        if ev.fallback:
            self._line(self._dim(f"(selector: {ev.content})"))

    def _chunk(self, ev: ChunkEvent) -> None:
        turn, text = self._open.get(ev.source, (ev.turn, ""))
        self._open[ev.source] = (turn, text + ev.content)
        if self._streaming == ev.source:
            self._write(
                visible(ev.content)
            )  # one chunk at a time: an escape split over chunks is still shown
            self.out.flush()
        elif self._streaming is None and ev.source not in self._cut and self._first_open() == ev.source:
            self._go_live(ev.source)
        # else parallel speakers (fan-out, votes): one live line at a time, the others wait their turn

    def _first_open(self) -> str | None:
        """The speaker writing the earliest turn's message, if any."""
        return min(self._open, key=lambda source: self._open[source][0], default=None)

    def _go_live(self, source: str) -> None:
        turn, text = self._open[source]
        self._write(f"[{turn}] {self._name(source)}: {visible(text)}")
        self._streaming = source
        self.out.flush()

    def _message(self, ev: MessageEvent) -> None:
        self._open.pop(ev.source, None)
        self._cut.discard(ev.source)
        if self._streaming == ev.source and ev.kind == "text":
            self._write("\n")
            self._streaming = None
            self.out.flush()
        elif any(turn < ev.turn for turn, _ in self._open.values()):
            self._done.append(ev)  # shown after the earlier turn's message
            return
        else:
            self._whole(ev)
        self._next()

    def _whole(self, ev: MessageEvent) -> None:
        tag = " (tool result)" if ev.kind == "tool_summary" else ""
        self._line(f"[{ev.turn}] {self._name(ev.source)}{tag}: {visible(_clip(ev.content))}")

    def _next(self) -> None:
        """A message ended: show the messages that waited for it, then stream the next turn's live."""
        while self._streaming is None:
            first = self._first_open()
            before = self._open[first][0] if first is not None else None
            waiting = [ev for ev in self._done if before is None or ev.turn < before]
            if waiting:
                ev = min(waiting, key=lambda ev: ev.turn)
                self._done.remove(ev)
                self._whole(ev)
            else:
                if first is not None and first not in self._cut:
                    self._go_live(first)
                return

    def _ended(self, source: str) -> None:
        """`source`'s turn ended with no message (abandoned)."""
        if self._open.pop(source, None) is not None:
            self._cut.discard(source)
            self._next()

    def _tool_call(self, ev: ToolCallEvent) -> None:
        # Arguments that are not a JSON object (a raw string from the model) are shown as a JSON string too.
        self._line(
            self._dim(f"    → {visible(ev.source, one_line=True)} calls {call_text(ev.name, ev.arguments)}")
        )

    def _tool_result(self, ev: ToolResultEvent) -> None:
        mark = "✗" if ev.is_error else "←"
        self._line(
            self._dim(f"    {mark} {visible(ev.name, one_line=True)}: {visible(_clip(ev.content, 300))}")
        )

    def _tool_progress(self, ev: ToolProgressEvent) -> None:
        shown = visible(progress_text(ev), one_line=True)
        self._line(self._dim(f"    … {visible(ev.name, one_line=True)}: {shown}"))

    def _approval_request(self, ev: ApprovalRequestEvent) -> None:
        self._line(
            self._c(
                f"? {visible(ev.source, one_line=True)} asks to call {call_text(ev.name, ev.arguments)}: "
                "needs approval",
                33,
            )
        )

    def _approval_decision(self, ev: ApprovalDecisionEvent) -> None:
        verdict = "approved" if ev.approved else "denied"
        because = f" ({ev.reason})" if ev.reason else ""
        self._line(
            self._c(
                f"  {visible(ev.name, one_line=True)} {verdict} by {visible(ev.actor, one_line=True)}"
                f"{visible(because)}",
                32 if ev.approved else 31,
            )
        )

    def _file(self, ev: FileEvent) -> None:
        self._line(
            self._dim(
                f"    ⇣ {visible(ev.source, one_line=True)} wrote {visible(ev.name, one_line=True)} "
                f"({ev.size:,} bytes): {visible(ev.path, one_line=True)}"
            )
        )

    def _abandoned(self, ev: TurnAbandonedEvent) -> None:
        self._line(
            self._dim(f"    ({visible(ev.source, one_line=True)}'s turn abandoned: {visible(ev.reason)})")
        )
        self._ended(ev.source)

    def _note(self, ev: NoteEvent) -> None:
        self._line(
            self._dim(f"    ✎ {visible(ev.source, one_line=True)} noted: {visible(_clip(ev.content, 300))}")
        )

    def _error(self, ev: ErrorEvent) -> None:
        self._line(self._c(f"error in {ev.source}: {ev.error_type}: {ev.content}", 31))

    def _result(self, ev: RunResult) -> None:
        for done in sorted(self._done, key=lambda done: done.turn):  # whatever still waited, in turn order
            self._whole(done)
        self._done.clear()
        self._open.clear()
        shown = sum(turns for *_, turns in self.projection.per_speaker())  # the messages shown, as counted
        self._line(self._dim("── ") + visible(summary(ev, shown, self._at_turn)))

    # -- the conflict-resolution ladder, and the hierarchical and consensus patterns ----------------------

    def _validation(self, ev: ValidationEvent) -> None:
        if not ev.passed and ev.source in self._open:  # the next attempt is written afresh
            self._open[ev.source] = (self._open[ev.source][0], "")
        if ev.passed:
            self._line(self._c(f"    ✓ {ev.source}'s answer passes its checks", 32))
        else:
            self._line(
                self._c(
                    f"    ✗ {ev.source}'s answer fails its checks (attempt {ev.attempt} of "
                    f"{ev.retries + 1}): " + "; ".join(ev.problems),
                    31,
                )
            )

    def _question(self, ev: QuestionEvent) -> None:
        self._line(self._c(f"? {ev.source} asks you: {ev.content}", 33))

    def _answer(self, ev: AnswerEvent) -> None:
        how = "no answer in time; default" if ev.timed_out else f"answered by {ev.actor}"
        self._line(self._dim(f"  ({how}: {_clip(ev.content, 200)})"))

    def _escalation(self, ev: EscalationEvent) -> None:
        self._line(self._c(f"‼ escalation ({ev.kind}): {ev.content}", 33))
        for i, pos in enumerate(ev.positions, 1):
            self._line(f"   {i}. {self._name(pos.who)}: {visible(_clip(pos.text, 300))}")

    def _resolved(self, ev: EscalationResolvedEvent) -> None:
        asked = next((e for e in self._settled if isinstance(e, EscalationEvent)), None)
        held = (
            asked.positions[ev.choice - 1].who
            if asked and ev.choice and len(asked.positions) >= ev.choice
            else ""
        )
        what = {
            "choose": f"position {ev.choice} chosen" + (f" ({visible(held, one_line=True)})" if held else ""),
            "write": "answer written",
            "continue": "team continues",
            "unresolved": "left unresolved",
        }[ev.decision]
        self._line(
            self._c(f"  escalation settled by {ev.actor}: {what}", 32 if ev.decision != "unresolved" else 31)
        )

    def _subtask(self, ev: SubtaskEvent) -> None:
        if ev.status == "started":
            self._line(self._dim(f"    ↳ {ev.source} → {ev.worker}: {_clip(ev.task, 200)}"))
        else:
            self._line(
                self._dim(f"    ↲ {ev.worker} {'finished' if ev.status == 'done' else 'failed'} its sub-task")
            )

    def _vote(self, ev: VoteEvent) -> None:
        self._line(self._c(f"  ⚖ {ev.content}", 36))


_SHOWN: dict[type, Callable[[Renderer, Any], None]] = {
    RunStartedEvent: Renderer._started,
    NoticeEvent: Renderer._notice,
    HumanMessageEvent: Renderer._human,
    HumanQueuedEvent: Renderer._queued,
    SpeakerSelectedEvent: Renderer._speaker,
    ChunkEvent: Renderer._chunk,
    MessageEvent: Renderer._message,
    ToolCallEvent: Renderer._tool_call,
    ToolResultEvent: Renderer._tool_result,
    ToolProgressEvent: Renderer._tool_progress,
    ApprovalRequestEvent: Renderer._approval_request,
    ApprovalDecisionEvent: Renderer._approval_decision,
    FileEvent: Renderer._file,
    TurnAbandonedEvent: Renderer._abandoned,
    NoteEvent: Renderer._note,
    ErrorEvent: Renderer._error,
    RunResult: Renderer._result,
    ValidationEvent: Renderer._validation,
    QuestionEvent: Renderer._question,
    AnswerEvent: Renderer._answer,
    EscalationEvent: Renderer._escalation,
    EscalationResolvedEvent: Renderer._resolved,
    SubtaskEvent: Renderer._subtask,
    VoteEvent: Renderer._vote,
}
"""How each kind of event prints; kinds not here (usage, triggers, speaker picks by the model) print nothing."""


def _clip(text: str, limit: int = CLIP) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
