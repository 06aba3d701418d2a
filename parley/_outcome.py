"""How a run's result reads: the detail of its stop reason, how it ended in a user's words, its final answer,
each role's last position."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .events import Event, MessageEvent, Position, RunResult, StopReason
from .spec import TerminationSpec

__all__ = [
    "ended_in_words",
    "ending",
    "final_text",
    "headline",
    "last_positions",
    "shows_turn",
    "spent",
    "stop_detail",
    "stopped_by",
]

_HEADLINES: dict[str, str] = {
    "stop_text": "finished",
    "completed": "completed",
    "handoff": "handed back to you",
    "max_turns": "turn limit reached",
    "escalation": "stopped with a decision left open",
    "loop": "stopped going round in circles",
    "max_tokens": "token budget reached",
    "timeout": "time limit reached",
    "stopped": "stopped by you",
    "error": "stopped by an error",
}
"""Each stop reason in a user's words. The reason itself stays what data carries (JSON events, exit codes,
evaluation records); what a person reads (the terminal, the web chat) says this."""
_SAID_ALREADY = frozenset({"stopped by the user", "the team finished", "timeout"})
"""Details that add nothing to their headline."""
_BY = "stopped by "
_NOT_AGENTS = frozenset({"run_started", "human_message", "human_queued", "result", "notice"})


def shows_turn(ev: Event) -> bool:
    """Whether `ev` is an agent's (a message, a call, a speaker picked): its turn is one the run reached."""
    return ev.type not in _NOT_AGENTS


def stop_detail(
    outcome: StopReason,
    limits: TerminationSpec,
    *,
    settled: str | None,
    ended: str,
    used_tokens: int,
    error: tuple[str, str] | None,
) -> str:
    """What the result says about why the run stopped. `settled`: how a human settled a disagreement;
    `ended`: why the engine ended the run inside a turn (or the guard's own words)."""
    if settled is not None and outcome == "completed":
        return settled
    if outcome in ("stop_text", "max_turns", "loop"):
        return ended
    if outcome == "max_tokens" and limits.max_tokens:  # the same words whichever check saw it first
        return f"token budget of {limits.max_tokens:,} reached ({used_tokens:,} used)"
    if outcome == "error" and error:
        return f"{error[0]}: {error[1]}"
    if outcome == "timeout":
        return f"wall-clock limit of {limits.timeout_s:g} s reached" if limits.timeout_s else "timeout"
    if outcome == "stopped":  # by whom, when the run was told (a shared room's member, say)
        return ended if ended.startswith(_BY) else "stopped by the user"
    return {"completed": "the team finished"}.get(outcome, "")


def headline(reason: str) -> str:
    """How a run ended, in a few words: `turn limit reached` for `max_turns`."""
    return _HEADLINES.get(reason, reason.replace("_", " "))


def ending(reason: str, detail: str, at_turn: int | None = None, viewer: str = "") -> tuple[str, str]:
    """How a run ended, for a person: its headline, capitalised (`Turn limit reached`), and what follows it
    (`: reached 8 turns`), empty when the detail only repeats the headline. `at_turn`: the turn a run stopped by
    its user had reached (`Stopped by you` then says ` at turn 3`). A run stopped by someone other than `viewer`
    (a member of a shared room) names them: `Stopped by bob`."""
    words = headline(reason)
    head = words[:1].upper() + words[1:]
    if reason == "stopped":
        by = stopped_by(detail)
        head = f"Stopped by {by}" if by and by != viewer else head
        if at_turn is not None:
            return head, f" at turn {at_turn}" if at_turn else " before any turn"
        if by or detail.strip() in _SAID_ALREADY:
            return head, ""
    detail = detail.removeprefix(f"{reason}: ").strip()
    return head, "" if detail in _SAID_ALREADY or not detail else f": {detail}"


def ended_in_words(reason: str, detail: str, at_turn: int | None = None, viewer: str = "") -> str:
    """How a run ended and why, in one phrase: `Turn limit reached: reached 8 turns`, `Finished: editor said
    APPROVE`, `Stopped by you at turn 3`, `Stopped by bob at turn 3` (to anyone but bob)."""
    head, rest = ending(reason, detail, at_turn, viewer)
    return head + rest


def stopped_by(detail: str) -> str:
    """Who stopped a run, from its result's detail (`stopped by bob`), or "" if it does not say (a run stopped
    from the terminal, or by a program)."""
    by = detail.removeprefix(_BY).strip() if detail.startswith(_BY) else ""
    return "" if by == "the user" else by


def spent(result: RunResult, turns: int | None = None) -> str:
    """What a run did and spent, after how it ended: `4 turns · 1,200 prompt + 34 completion tokens · $0.0012`,
    and the messages kept for the next run. `turns`: the turns shown, when counted apart from the result."""
    done = result.turns if turns is None else turns
    parts = [
        f"{done} turn" + ("" if done == 1 else "s"),
        f"{result.prompt_tokens:,} prompt + {result.completion_tokens:,} completion tokens",
        "cost unknown" if result.cost_usd is None else f"${result.cost_usd:.4f}",
    ]
    if result.undelivered:
        n = len(result.undelivered)
        parts.append(f"{n} message{'' if n == 1 else 's'} kept for the next run")
    return " · ".join(parts)


def final_text(events: Sequence[Event]) -> str:
    """The run's answer: its last message that says something ("Transferred to ..." does not)."""
    for ev in reversed(events):
        if isinstance(ev, MessageEvent) and ev.kind != "handoff":
            return ev.content
    return ""


def last_positions(events: Iterable[Event], roles: Iterable[str]) -> list[Position]:
    """Each role's last text message, in the roles' order (roles that said nothing are left out)."""
    last: dict[str, str] = {}
    for ev in events:
        if isinstance(ev, MessageEvent) and ev.kind == "text":
            last[ev.source] = ev.content
    return [Position(who=name, text=last[name]) for name in roles if name in last]
