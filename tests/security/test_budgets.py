"""A token budget ends every run, whatever the pattern: once the meter passes it, the run stops with `max_tokens`
(the CLI exits 3) and every model call still in flight, in any parallel branch, is abandoned. The turn cap
ends a parallel step the same way.

AutoGen's manager checks a team's termination only when every branch of a parallel step has answered, so a budget
spent by one fast branch used to wait for the slowest one (in the issue, a fan-out of 9 branches on a slow model
never ended). Here one role answers quickly with a long reply that spends the budget, while the others are on a
model that takes ten minutes per reply: the run must end long before they would answer. The teams give their
roles their own scripted models (a fast one and a slow one), because one script answers every call equally fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _support import collect

from parley import Conversation
from parley.events import MessageEvent, RunResult, RunStartedEvent, event_adapter
from parley.store import Store

Write = Callable[[str, str], Path]
PARLEY = str(Path(sys.executable).parent / "parley")
ROOT = Path(__file__).resolve().parents[2]
LONG = "q7Zx9Kp2Wm4Rt8Vn " * 200
"""One answer of about 3,200 tokens in 200 streamed pieces: more than the budget on its own."""
BUDGET = 2000
"""More than every call before the long answer (a manager's delegation included), less than the long answer."""
SLOW_S = 600
"""Seconds the slow model takes per reply: a run that waited for it would hit the safety net first."""
SAFETY_NET_S = 60
"""Not a speed check: a run still going after this long is a run the budget did not end."""
BRANCHES = [f"b{i}" for i in range(1, 9)]


def _roles(
    names: list[str], fast: str, scripts: dict[str, Path], extra: dict[str, str] | None = None
) -> list[str]:
    lines = ["roles:"]
    for name in names:
        lines += [f"  - name: {name}", f"    prompt: You are {name}."]
        lines.append(
            extra[name]
            if extra and name in extra
            else f"    model: scripted:{scripts['fast' if name == fast else 'slow']}"
        )
    return lines


def _scripts(write: Write, prefix: str, fast: dict[str, list[Any]], slow: list[str]) -> dict[str, Path]:
    return {
        # Streamed in small steps (each one a turn of the event loop), so every branch has started before the
        # long answer is complete, as with real models.
        "fast": write(f"{prefix}fast.yaml", json.dumps({"roles": fast, "delay_s": 0.5})),
        "slow": write(
            f"{prefix}slow.yaml",
            json.dumps({"roles": {r: ["a slow answer"] * 3 for r in slow}, "delay_s": SLOW_S}),
        ),
    }


def _fanout(write: Write, prefix: str = "") -> tuple[Path, list[str]]:
    """Nine branches and a join; b0 spends the budget while b1..b8 are still thinking."""
    scripts = _scripts(write, prefix, {"b0": [LONG] * 3}, [*BRANCHES, "join"])
    lines = [
        f"name: {prefix}fan",
        "pattern: fanout",
        "fanout: {join: join}",
        *_roles(["b0", *BRANCHES, "join"], "b0", scripts),
        "termination: {max_turns: 50}",
    ]
    return write(f"{prefix}fan.yaml", "\n".join(lines) + "\n"), BRANCHES


def _consensus(write: Write) -> tuple[Path, list[str]]:
    voters = ["v1", "v2", "v3", "v4"]
    scripts = _scripts(write, "", {"v0": [LONG + "\nVOTE: yes"] * 3}, voters)
    lines = [
        "name: vote",
        "pattern: consensus",
        "consensus: {debate_rounds: 1, tie: escalate}",
        *_roles(["v0", *voters], "v0", scripts),
        "termination: {max_turns: 50}",
    ]
    return write("vote.yaml", "\n".join(lines) + "\n"), voters


def _sequential(write: Write) -> tuple[Path, list[str]]:
    scripts = _scripts(write, "", {"first": [LONG] * 3}, ["second", "third"])
    lines = [
        "name: pipeline",
        "pattern: sequential",
        *_roles(["first", "second", "third"], "first", scripts),
        "termination: {max_turns: 50}",
    ]
    return write("pipeline.yaml", "\n".join(lines) + "\n"), ["second", "third"]


def _hierarchical(write: Write) -> tuple[Path, list[str]]:
    """A manager delegates to nine workers at once (parallel tool calls); w0 spends the budget."""
    workers = [f"w{i}" for i in range(1, 9)]
    delegate = {"calls": [{"tool": w, "args": {"task": f"part {w}"}} for w in ["w0", *workers]]}
    scripts = _scripts(write, "", {"boss": [delegate, "done"], "w0": [LONG] * 3}, workers)
    lines = [
        "name: firm",
        "pattern: hierarchical",
        "hierarchical: {manager: boss, max_delegations: 5}",
        *_roles(["boss", "w0", *workers], "w0", scripts, {"boss": f"    model: scripted:{scripts['fast']}"}),
        "termination: {max_turns: 50}",
    ]
    return write("firm.yaml", "\n".join(lines) + "\n"), workers


def _subteam(write: Write) -> tuple[Path, list[str]]:
    """A manager delegates to a whole sub-team, itself a fan-out of nine branches."""
    sub, slow = _fanout(write, "sub")
    boss = write(
        "boss.yaml", json.dumps({"roles": {"boss": [{"tool": "crew", "args": {"task": "analyse"}}, "done"]}})
    )
    lines = [
        "name: holding",
        "pattern: hierarchical",
        "hierarchical: {manager: boss}",
        "roles:",
        "  - name: boss",
        "    prompt: You lead.",
        f"    model: scripted:{boss}",
        "  - name: crew",
        "    description: a team of nine",
        f"    team: {sub.name}",
        "termination: {max_turns: 50}",
    ]
    return write("holding.yaml", "\n".join(lines) + "\n"), slow


TEAMS = {
    "fanout": _fanout,
    "consensus": _consensus,
    "sequential": _sequential,
    "hierarchical": _hierarchical,
    "sub-team": _subteam,
}


def _parley(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [PARLEY, *args],
        capture_output=True,
        text=True,
        timeout=SAFETY_NET_S,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("pattern", sorted(TEAMS))
def test_a_spent_budget_ends_the_run_with_max_tokens_and_exit_3(write: Write, pattern: str) -> None:
    team, slow = TEAMS[pattern](write)
    proc = _parley("run", str(team), "Analyse Q3", "--max-tokens", str(BUDGET), "--json", "--no-save")
    assert proc.returncode == 3, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    result = events[-1]
    assert result["type"] == "result" and result["stop_reason"] == "max_tokens", result
    assert result["detail"].startswith(f"token budget of {BUDGET:,} reached")
    assert result["prompt_tokens"] + result["completion_tokens"] >= BUDGET
    assert "parley: Token budget reached: token budget of" in proc.stderr
    # The slow roles never answered: their calls, where they had started, were abandoned with the run.
    assert not [e for e in events if e["type"] == "message" and e["source"] in slow]
    assert all(e["cancelled"] for e in events if e["type"] == "usage" and e["source"] in slow)


@pytest.mark.parametrize("pattern", ["consensus", "fanout", "hierarchical", "sequential"])
def test_a_turn_cap_reached_inside_parallel_branches_ends_the_run(write: Write, pattern: str) -> None:
    """The same for the turn cap: the first answer is the last turn, whoever else is still working."""
    team, slow = TEAMS[pattern](write)
    proc = _parley("run", str(team), "Analyse Q3", "--max-turns", "1", "--json", "--no-save")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    result = events[-1]
    assert result["type"] == "result" and result["stop_reason"] == "max_turns", result
    assert result["detail"] == "reached 1 turns" and result["turns"] == 1
    assert not [e for e in events if e["type"] == "message" and e["source"] in slow]


async def _drained() -> None:
    """Wait (bounded) until every task the run left behind has ended, so nothing can still call a model."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        _, pending = await asyncio.wait(others, timeout=SAFETY_NET_S)
        assert not pending, f"tasks still running after the run ended: {pending}"


@pytest.mark.parametrize("pattern", sorted(TEAMS))
async def test_after_the_budget_stops_a_run_no_role_calls_a_model_and_nothing_is_left_running(
    write: Write, pattern: str
) -> None:
    team, slow = TEAMS[pattern](write)
    conv = Conversation(team, max_tokens=BUDGET)
    events = await asyncio.wait_for(collect(conv.start("Analyse Q3")), SAFETY_NET_S)
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "max_tokens", result
    calls = [len(script.calls) for script in conv.pool.scripts]
    await _drained()  # a role still waiting on a cancelled delegation would hold its whole team for good
    assert [len(script.calls) for script in conv.pool.scripts] == calls  # no model call after the stop
    assert not [e for e in events if isinstance(e, MessageEvent) and e.source in slow]


async def test_after_the_budget_stops_a_fanout_the_store_has_it_and_the_conversation_goes_on(
    write: Write, tmp_path: Path
) -> None:
    team, slow = _fanout(write)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'budget.db'}")
    try:
        tid = await store.create_thread("dana", team.name, "scripted", "Analyse Q3")
        conv = Conversation(team, max_tokens=BUDGET)
        conv.attach(store, tid)
        first = await asyncio.wait_for(collect(conv.start("Analyse Q3")), SAFETY_NET_S)
        result = first[-1]
        assert isinstance(result, RunResult) and result.stop_reason == "max_tokens", result
        fast, slow_model = conv.pool.scripts
        assert {c.who for c in slow_model.calls} == set(slow)  # every slow branch was in flight at the stop
        assert [e.source for e in first if isinstance(e, MessageEvent)] == ["b0"]  # the answer that spent it
        await _drained()
        stored = [event_adapter.validate_python(r.payload) for r in await store.events(tid)]
        assert stored == conv.history

        # The next run starts the team again (not a graph with nothing left to run) with all that was said.
        second = await asyncio.wait_for(collect(conv.start("Now Q4")), SAFETY_NET_S)
        assert isinstance(second[-1], RunResult) and second[-1].stop_reason == "max_tokens"
        assert [e.source for e in second if isinstance(e, MessageEvent)] == ["b0"]
        prompt = " ".join(str(m.content) for m in fast.calls[-1].messages)
        assert "Analyse Q3" in prompt and "Now Q4" in prompt and LONG.strip() in prompt
        assert [e for e in conv.history if isinstance(e, RunStartedEvent)][-1].content == "Now Q4"
        await _drained()
        stored = [event_adapter.validate_python(r.payload) for r in await store.events(tid)]
        assert stored == conv.history
    finally:
        await store.close()
