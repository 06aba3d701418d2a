"""Bounded, always: max_turns, max_tokens and timeout_s each stop a run with their own reason, whatever
the pattern, against a model that never stops talking and a tool that never returns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import collect

from parley import Conversation, ToolRegistry
from parley.events import RunResult

Write = Callable[[str, str], Path]
ENDLESS = 200
"""Replies per role: far more than any limit lets a run use."""
LONG = "Tokens " * 120

PATTERNS: dict[str, tuple[str, dict[str, list[object]]]] = {
    # pattern: (team file body after `pattern:`, replies per role, the selector's included)
    "round_robin": ("", {"alpha": ["a"], "beta": ["b"]}),
    "selector": ("", {"alpha": ["a"], "beta": ["b"], "selector": ["alpha", "beta"]}),
    "loop": ("loop: {until: NEVER, max_rounds: 100}\n", {"alpha": ["a"], "beta": ["b"]}),
    "swarm": (
        "",
        {
            "alpha": [{"tool": "transfer_to_beta", "args": {}}],
            "beta": [{"tool": "transfer_to_alpha", "args": {}}],
        },
    ),
    "hierarchical": (
        "hierarchical: {manager: alpha, max_delegations: 50}\n",
        {"alpha": [{"tool": "beta", "args": {"task": "more"}}], "beta": ["b"]},
    ),
    "consensus": (
        "consensus: {debate_rounds: 5, tie: judge, judge: gamma}\n",
        {"alpha": ["VOTE: yes"], "beta": ["VOTE: no"], "gamma": ["VOTE: yes"]},
    ),
}


def _team(pattern: str, extra: str, termination: str, tools: str = "") -> str:
    roles = ["alpha", "beta", "gamma"] if pattern == "consensus" else ["alpha", "beta"]
    lines = [f"name: bounded-{pattern.replace('_', '-')}", f"pattern: {pattern}", "roles:"]
    for r in roles:
        lines += [f"  - name: {r}", f"    prompt: You are {r}."]
        if pattern == "swarm":
            lines.append(f"    handoffs: [{'beta' if r == 'alpha' else 'alpha'}]")
        if tools and r == "alpha":
            lines.append(f"    tools: [{tools}]")
    return "\n".join(lines) + "\n" + extra + termination


def _script(replies: dict[str, list[object]], *, long: bool = False, delay: float = 0.0) -> str:
    import json

    out: dict[str, object] = {"roles": {}}
    for who, items in replies.items():
        endless = [
            LONG + str(x) if long and isinstance(x, str) and who != "selector" else x for x in items
        ] * ENDLESS
        if who == "selector":
            out["selector"] = endless
        else:
            out["roles"][who] = endless  # type: ignore[index]
    if delay:
        out["delay_s"] = delay
    return json.dumps(out)


async def _run(
    write: Write, pattern: str, termination: str, *, long: bool = False, delay: float = 0.0
) -> RunResult:
    extra, replies = PATTERNS[pattern]
    team = write("team.yaml", _team(pattern, extra, termination))
    script = write("s.yaml", _script(replies, long=long, delay=delay))
    events = await collect(Conversation(team, model=f"scripted:{script}").start("Talk forever"))
    result = events[-1]
    assert isinstance(result, RunResult)
    return result


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
async def test_max_turns_stops_every_pattern(write: Write, pattern: str) -> None:
    result = await _run(write, pattern, "termination: {max_turns: 7, max_repeats: 1000}\n")
    assert result.stop_reason == "max_turns", result.detail
    assert 7 <= result.turns <= 8  # a parallel step may finish its last answer alongside


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
async def test_max_tokens_stops_every_pattern(write: Write, pattern: str) -> None:
    result = await _run(
        write, pattern, "termination: {max_turns: 1000, max_tokens: 3000, max_repeats: 1000}\n", long=True
    )
    assert result.stop_reason == "max_tokens", result.detail
    # Calls already under way when the budget ran out may finish; no call starts after it.
    assert 3000 <= result.prompt_tokens + result.completion_tokens < 3000 + 3 * 1500


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
async def test_timeout_stops_every_pattern_mid_generation(write: Write, pattern: str) -> None:
    result = await _run(
        write, pattern, "termination: {max_turns: 1000, timeout_s: 0.6, max_repeats: 1000}\n", delay=0.25
    )
    assert result.stop_reason == "timeout", result.detail


async def test_timeout_stops_a_tool_that_never_returns(write: Write, tmp_path: Path) -> None:
    write(
        "slow/hang.py",
        '''
        import time
        from parley.tools import tool

        @tool
        def wait_forever() -> str:
            """Never returns."""
            time.sleep(3600)
            return "never"
    ''',
    )
    registry = ToolRegistry.discover([tmp_path / "slow"])
    team = write(
        "team.yaml",
        _team("round_robin", "", "termination: {max_turns: 10, timeout_s: 0.5}\n", tools="wait_forever"),
    )
    script = write("s.yaml", '{"roles": {"alpha": [{"tool": "wait_forever", "args": {}}], "beta": ["b"]}}')
    conv = Conversation(team, model=f"scripted:{script}", registry=registry)
    events = await asyncio.wait_for(collect(conv.start("Wait")), 30)  # a hang guard, not a speed check
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "timeout" and result.turns == 0
