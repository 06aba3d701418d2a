"""One turn numbering: parallel voters are numbered in the order their messages appear, and the messages, the
terminal, the usage chart and the result's turn count agree."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import collect

from parley import Conversation
from parley.cli import main
from parley.events import ChunkEvent, Event, MessageEvent, RunResult
from parley.projection import Projection

Write = Callable[[str, str], Path]
WORDS = " ".join(["reasons"] * 40)


def _committee(write: Write) -> Path:
    """Three voters on their own scripts: the analyst starts writing first and finishes last, risk starts
    second and finishes first, ops starts third and finishes second."""
    scripts = {
        "analyst": write("analyst.yaml", f'roles:\n  analyst: ["{WORDS}. VOTE: approve"]\ndelay_s: 2.0\n'),
        "risk": write("risk.yaml", 'roles:\n  risk: ["VOTE: reject"]\ndelay_s: 0.4\n'),
        "ops": write("ops.yaml", 'roles:\n  ops: ["VOTE: approve"]\ndelay_s: 0.8\n'),
    }
    roles = "".join(
        f"  - {{name: {name}, prompt: You are {name}., model: 'scripted:{script}'}}\n"
        for name, script in scripts.items()
    )
    return write(
        "committee.yaml",
        "name: committee\npattern: consensus\nconsensus: {options: [approve, reject]}\nroles:\n"
        + roles
        + "termination: {max_turns: 12}\n",
    )


def _first_chunks(events: list[Event]) -> list[str]:
    seen: list[str] = []
    for ev in events:
        if isinstance(ev, ChunkEvent) and ev.source not in seen:
            seen.append(ev.source)
    return seen


async def test_parallel_voters_are_numbered_in_the_order_their_messages_appear(write: Write) -> None:
    events = await collect(Conversation(_committee(write)).start("Take the Acme contract?"))
    assert _first_chunks(events) == ["analyst", "risk", "ops"]  # the order their messages appear in
    messages = [ev for ev in events if isinstance(ev, MessageEvent)]
    assert [m.source for m in messages] == ["risk", "ops", "analyst", "verdict"]  # the order they finish in
    turns = {m.source: m.turn for m in messages}
    assert turns == {"analyst": 1, "risk": 2, "ops": 3, "verdict": 4}
    # Every streamed piece carries its message's number, from the first one on.
    assert all(ev.turn == turns[ev.source] for ev in events if isinstance(ev, ChunkEvent))
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "completed"
    projection = Projection()
    for ev in events:
        projection.apply(ev)
    chart = sum(turns for *_, turns in projection.per_speaker())
    assert result.turns == chart == len(messages) == max(turns.values())


def test_the_terminal_shows_parallel_turns_in_their_numbered_order(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(_committee(write)), "Take the Acme contract?", "--no-save"])
    out = capsys.readouterr().out
    assert code == 0
    numbered = re.findall(r"^\[(\d+)\] (\w+): ", out, flags=re.MULTILINE)
    assert numbered == [("1", "analyst"), ("2", "risk"), ("3", "ops"), ("4", "verdict")]
    assert f"[1] analyst: {WORDS}. VOTE: approve\n" in out  # streamed live, whole, once
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("── Completed · 4 turns · ")
