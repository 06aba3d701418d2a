"""How a run's result reads: the detail of its stop reason, its final answer, each role's last position."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .events import Event, MessageEvent, Position, StopReason
from .spec import TerminationSpec

__all__ = ["final_text", "last_positions", "stop_detail"]


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
    return {"stopped": "stopped by the user", "completed": "the team finished"}.get(outcome, "")


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
