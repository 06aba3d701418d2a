"""Helpers shared by tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def team_yaml(
    pattern: str = "round_robin",
    roles: tuple[str, ...] = ("alpha", "beta"),
    *,
    max_turns: int = 6,
    stop_text: str | None = None,
    stop_from: tuple[str, ...] = (),
    extra: str = "",
    tools: dict[str, list[str]] | None = None,
) -> str:
    lines = ["name: test-team", f"pattern: {pattern}", "roles:"]
    for r in roles:
        lines += [f"  - name: {r}", f"    description: the {r} role", f"    prompt: You are {r}."]
        if tools and r in tools:
            lines.append(f"    tools: [{', '.join(tools[r])}]")
    lines += ["termination:", f"  max_turns: {max_turns}"]
    if stop_text:
        lines.append(f"  stop_text: {stop_text}")
    if stop_from:
        lines.append(f"  stop_from: [{', '.join(stop_from)}]")
    return "\n".join(lines) + "\n" + extra


async def collect(run: Any, on_event: Callable[[Any], None] = lambda ev: None) -> list[Any]:
    """Every event of a run, in order, calling `on_event` on each as it arrives (to steer the run)."""
    events = []
    async for ev in run:
        events.append(ev)
        on_event(ev)
    return events
