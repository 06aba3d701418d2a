"""How events read in the web chat: one place, used live and when a stored conversation is reopened."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, ParamSpec

from .._render import summary
from ..conversation import Conversation
from ..events import (
    AnswerEvent,
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    ErrorEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    FileEvent,
    HumanMessageEvent,
    MessageEvent,
    NoteEvent,
    NoticeEvent,
    QuestionEvent,
    RunResult,
    SubtaskEvent,
    ToolProgressEvent,
    TriggerEvent,
    TurnAbandonedEvent,
    ValidationEvent,
    VoteEvent,
)

SYSTEM = "parley"
CLIP = 1500
BAR_WIDTH = 9


_CODE = re.compile(
    r"(^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^ {0,3}\2[ \t]*$|\Z)|(`+).+?\3|<[a-zA-Z][\w+.-]*:[^\s<>]*>|\b(?:https?|ftp)://[^\s<>]*)",
    re.M | re.S,
)
"""Fenced code blocks, code spans, autolinks and bare web addresses: text Markdown shows as it is (a backslash
would show too)."""
_DIRECTIVE = re.compile(r"(?<!\\):(?=[A-Za-z])")


def md_safe(text: str) -> str:
    """Text as the web chat's Markdown shows it: Chainlit parses `:name` as a directive and drops it
    (`openai:gpt-4o-mini` read as `openai`), so a colon before a letter is escaped, except in code."""
    out, at = [], 0
    for m in _CODE.finditer(text):
        out += [_DIRECTIVE.sub(r"\\:", text[at : m.start()]), m.group(0)]
        at = m.end()
    out.append(_DIRECTIVE.sub(r"\\:", text[at:]))
    return "".join(out)


_P = ParamSpec("_P")


def _shown(build: Callable[_P, str]) -> Callable[_P, str]:
    """A builder of a message's Markdown whose text reaches the page as written (see md_safe)."""

    @wraps(build)
    def safe(*args: _P.args, **kwargs: _P.kwargs) -> str:
        return md_safe(build(*args, **kwargs))

    return safe


def clip(text: str, limit: int = CLIP) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quoted(text: str) -> str:
    """Markdown block quote of any text (every line, blank ones too); JSON as an indented code block."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            return "```json\n" + clip(json.dumps(json.loads(text), indent=2, ensure_ascii=False)) + "\n```"
        except (ValueError, RecursionError):  # not JSON, or nested too deep to show as JSON: plain text then
            pass
    return "\n".join(f"> {line}" if line.strip() else ">" for line in clip(text).splitlines() or [""])


def speaker_header(source: str, turn: int, subtask: SubtaskEvent | None = None) -> str:
    # Chainlit 2.12 shows an author's name only on hovering the avatar: say it in the message too.
    head = f"**{source}** · turn {turn}"
    if subtask is not None:  # a worker of a hierarchical team: say which sub-task this answers
        head += f" · sub-task from {subtask.source}: *{clip(subtask.task, 160)}*"
    return head + "\n\n"


@_shown
def agent_text(ev: MessageEvent, subtask: SubtaskEvent | None = None) -> str:
    body = ev.content if ev.kind != "tool_summary" else f"Tool result:\n\n```\n{ev.content}\n```"
    return speaker_header(ev.source, ev.turn, subtask) + body


def meter_text(prompt: int, completion: int, cost: float | None, conv: Conversation) -> str:
    selector = conv.meter.by_source().get("selector")
    sel = f" (selector {selector[0] + selector[1]:,})" if selector else ""
    money = "cost unknown" if cost is None else f"${cost:.4f}"
    return f"**Meter** · {prompt:,} prompt + {completion:,} completion tokens{sel} · {money}"


@_shown
def approval_text(ev: ApprovalRequestEvent) -> str:
    args = json.dumps(ev.arguments, indent=2, ensure_ascii=False)
    return f"**{ev.source}** wants to call `{ev.name}` and needs your approval:\n\n```json\n{args}\n```"


@_shown
def decision_text(ev: ApprovalDecisionEvent) -> str:
    verdict = "approved" if ev.approved else "denied"
    because = f": {ev.reason}" if ev.reason else ""
    return f"`{ev.name}` {verdict} by {ev.actor}{because}"


# -- the conflict-resolution ladder: checks, questions, escalations ----------------------------------


def _one_line(text: str, limit: int) -> str:
    return clip(" ".join(text.split()), limit)


def tool_progress_line(ev: ToolProgressEvent) -> str:
    """A running tool's progress as one line: `Working: 3/10 · Fetching page 3` (a server's numbers and words)."""
    if ev.progress is None:
        done = ""
    elif ev.total:
        done = f"{ev.progress:g}/{ev.total:g}"
    else:
        done = f"{ev.progress:g}"
    words = _one_line(ev.content, 300)
    return "Working: " + " · ".join(part for part in (done, words) if part) if done or words else ""


def tool_log_line(ev: ToolProgressEvent) -> str:
    """One log line of a running tool, with the server's level: `warning: disk almost full`."""
    level = "".join(c for c in (ev.level or "info") if c.isalnum())[:12] or "info"
    return f"{level}: {_one_line(ev.content, 300)}"


def tool_output(main: str, log: Sequence[str] = ()) -> str:
    """A tool step's output: its progress or result, then the server's log lines, if any, as plain text."""
    if not log:
        return main
    block = "```text\n" + "\n".join(log) + "\n```"
    return f"{main}\n\n{block}" if main else block


@_shown
def validation_text(ev: ValidationEvent, subtask: SubtaskEvent | None = None) -> str:
    """A failed attempt, as the closed message of that attempt; a corrected answer that passes, as a note."""
    if ev.passed:
        return f"✔ **{ev.source}**'s corrected answer passes its checks (attempt {ev.attempt})"
    problems = "\n".join(f"- {clip(p, 300)}" for p in ev.problems)
    then = (
        f"*{ev.source} is asked to correct it.*"
        if ev.attempt <= ev.retries
        else "*No corrections left: a human decides (below).*"
    )
    return (
        f"{speaker_header(ev.source, ev.turn, subtask)}{ev.content}\n\n---\n"
        f"✖ **Attempt {ev.attempt} of {ev.retries + 1} fails its checks**\n\n{problems}\n\n{then}"
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


@_shown
def question_text(ev: QuestionEvent, answer: AnswerEvent | None = None) -> str:
    """The question a role asks the human, and once settled, how."""
    if answer is None:
        wait = (
            f" (no answer within {_minutes(ev.timeout_s)}: it goes on without)"
            if ev.timeout_s is not None
            else ""
        )
        status = f"*Type your answer below and send it: it goes to {ev.source}{wait}.*"
    elif answer.timed_out:
        status = f"✖ *No answer in time: {ev.source} went on with {clip(answer.content, 200)!r}*"
    else:
        status = f"✔ *Answered by {answer.actor}: {clip(answer.content, 200)}*"
    return f"**{ev.source}** asks you · turn {ev.turn}\n\n### {clip(ev.content, 600)}\n\n{status}"


ESCALATION_TITLES = {
    "tie": "the vote is tied",
    "validation": "an answer keeps failing its checks",
    "disagreement": "the team cannot agree",
}


def position_label(i: int, who: str) -> str:
    """The button that picks a position: "Pick 1 · analyst"."""
    return f"Pick {i} · {clip(who, 40)}"


@_shown
def escalation_text(ev: EscalationEvent) -> str:
    short = all(len(p.text) <= 80 and "\n" not in p.text for p in ev.positions)
    if short:  # e.g. a vote's options: one line each
        sides = "\n".join(f"{i}. **{p.who}**: {p.text}" for i, p in enumerate(ev.positions, 1))
    else:
        sides = "\n\n".join(f"**{i} · {p.who}**\n\n{quoted(p.text)}" for i, p in enumerate(ev.positions, 1))
    return (
        f"### ‼ Your decision: {ESCALATION_TITLES.get(ev.kind, ev.kind)}\n\n{clip(ev.content, 600)}\n\n"
        f"{sides}\n\n*Pick a position, let the team **Continue** as it is, or **Write my own…** answer.*"
    )


@_shown
def resolved_text(ev: EscalationResolvedEvent, positions: Sequence[Any] = ()) -> str:
    if ev.decision == "unresolved":
        return f"✖ The escalation was left unresolved: {ev.content}"
    if ev.decision == "choose":
        who = f" · {positions[ev.choice - 1].who}" if ev.choice and len(positions) >= ev.choice else ""
        what = f"picked position {ev.choice}{who}: *{clip(ev.content, 300)}*"
    elif ev.decision == "write":
        what = f"wrote their own answer: *{clip(ev.content, 300)}*"
    else:
        what = "let the team continue as it was"
    return f"✔ Decided by **{ev.actor}**: {what}"


# -- the patterns: sub-tasks of a hierarchical team, votes of a consensus team --------------------


@_shown
def subtask_text(started: SubtaskEvent, finished: SubtaskEvent | None = None, *, ended: str = "") -> str:
    """A sub-task's card: who gave it to whom, the task, and how far it is (`ended`: why the run stopped first)."""
    if ended:
        status = f"◼ *not finished: the run ended ({ended})*"
    elif finished is None:
        status = "◐ *working…*"
    elif finished.status == "done":
        status = "✔ *done*"
    else:
        status = f"✖ *failed*: {clip(finished.content, 300)}"
    return f"**{started.source} → {started.worker}** · sub-task\n\n{quoted(started.task)}\n\n{status}"


OUTCOMES = {
    "majority": "✔ **Majority for {decision}**",
    "debate": "↻ **No majority**: each voter now reads the others' answers and votes again",
    "tie": "⚖ **Still split after the debate**: the tie rule decides",
}


@_shown
def vote_text(ev: VoteEvent) -> str:
    """One round's tally as a small table: an answer per row, a bar, who voted for it, and the outcome."""
    if ev.outcome not in OUTCOMES:  # the tie settled: by the judge, the manager model or a human
        return f"⚖ The tie is settled: **{ev.decision}** (by {ev.source}, round {ev.round})"
    rows = ["| answer | votes | who |", "|:--|:--|:--|"]
    for answer, n in ev.tally.items():
        who = ", ".join(v for v, a in ev.votes.items() if a == answer)
        filled = round(BAR_WIDTH * n / max(1, len(ev.votes)))
        rows.append(
            f"| **{answer}** | `{'█' * filled}{'░' * (BAR_WIDTH - filled)}` {n} of {len(ev.votes)} | {who} |"
        )
    for voter, answer in ev.votes.items():
        if answer not in ev.tally:
            rows.append(f"| *{answer}* | – | {voter} |")
    outcome = OUTCOMES[ev.outcome].format(decision=ev.decision)
    return f"**Vote · round {ev.round}** · {len(ev.votes)} voters\n\n" + "\n".join(rows) + f"\n\n{outcome}"


NOTES = "Team notes"
"""The side panel's name; in a message, Chainlit makes it the link that opens the panel."""


@_shown
def notes_added_text(role: str, notes: Sequence[dict[str, Any]]) -> str:
    return f"**{role}** added to the {NOTES} ({len(notes)}): *{clip(str(notes[-1].get('text', '')), 200)}*"


@_shown
def notes_text(notes: Sequence[dict[str, Any]]) -> str:
    """The team's shared notes (team_notes), newest last."""
    if not notes:
        return "*No notes yet.*"
    return "\n\n".join(f"{i}. **{n.get('role', '?')}**: {n.get('text', '')}" for i, n in enumerate(notes, 1))


def _validation_note(ev: ValidationEvent) -> tuple[str, str] | None:
    if ev.passed:
        return (
            (SYSTEM, validation_text(ev)) if ev.attempt > 1 else None
        )  # a first answer that passes: no note
    return ev.source, validation_text(ev)


def human_note(ev: HumanMessageEvent, viewer: str = "") -> tuple[str, str] | None:
    """How a human message reaching the team reads to `viewer` (when known): their own, or another person's in a
    shared room."""
    others = bool(viewer and ev.author and ev.author != viewer)
    if ev.mode == "task" and not others:
        return None  # the task shows as what the user typed
    whose = f"{ev.author}'s message" if others else "your message"
    how = {
        "task": "started the run",
        "interrupt": "interrupted the turn",
        "say": f"joined the conversation after turn {ev.turn}",
    }[ev.mode]
    return SYSTEM, f"↳ {whose} {how}: *{ev.content}*"


_NOTES: dict[type, Callable[[Any], tuple[str, str] | None]] = {
    MessageEvent: lambda ev: (ev.source, agent_text(ev)),
    TurnAbandonedEvent: lambda ev: (
        ev.source,
        speaker_header(ev.source, ev.turn) + ev.content + f"\n\n*(cut short: {ev.reason})*",
    ),
    ApprovalRequestEvent: lambda ev: (SYSTEM, approval_text(ev)),
    ApprovalDecisionEvent: lambda ev: (SYSTEM, decision_text(ev)),
    ValidationEvent: _validation_note,
    QuestionEvent: lambda ev: (ev.source, question_text(ev)),
    EscalationEvent: lambda ev: (SYSTEM, escalation_text(ev)),
    EscalationResolvedEvent: lambda ev: (SYSTEM, resolved_text(ev)),
    SubtaskEvent: lambda ev: (ev.source, subtask_text(ev)) if ev.status == "started" else None,
    VoteEvent: lambda ev: (SYSTEM, vote_text(ev)),
    TriggerEvent: lambda ev: (SYSTEM, f"⚡ *{ev.role} woken by {ev.on}*"),
    ErrorEvent: lambda ev: (SYSTEM, f"**Error** in {ev.source}: `{ev.error_type}`: {ev.content}"),
    NoticeEvent: lambda ev: (SYSTEM, f"*{ev.content}*"),
    NoteEvent: lambda ev: (SYSTEM, f"**{ev.source}** added to the {NOTES}: *{clip(ev.content, 200)}*"),
    HumanMessageEvent: human_note,
    FileEvent: lambda ev: (
        ev.source,
        f"**{ev.source}** wrote `{ev.name}` ({ev.size:,} bytes) with `{ev.tool}`",
    ),
    RunResult: lambda ev: (SYSTEM, f"**Run ended** · {summary(ev)}"),
}
"""(author, markdown) of each kind of event shown as a message of its own."""


def note(ev: Event) -> tuple[str, str] | None:
    """(author, markdown) for an event shown as a message, or None when it is not one."""
    shown = _NOTES.get(type(ev))
    said = shown(ev) if shown is not None else None
    return (said[0], md_safe(said[1])) if said is not None else None
