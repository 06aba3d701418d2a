"""Streamed text goes from the agent straight to the run, past AutoGen's runtime (parley/engine/autogen/direct.py),
and a run shows exactly what it showed when every piece crossed the runtime: the same events, in the same order,
each piece in its turn, after the tool calls its agent made before it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _support import collect, team_yaml
from autogen_agentchat.messages import ModelClientStreamingChunkEvent

from parley import Conversation
from parley.engine.autogen import direct
from parley.events import ChunkEvent, Event, MessageEvent, ToolCallEvent, ToolResultEvent

Write = Callable[[str, str], Path]
LONG = " ".join(f"word{i}" for i in range(30))


def _team(write: Write) -> tuple[Path, Path]:
    team = write(
        "team.yaml",
        team_yaml("round_robin", roles=("analyst", "writer"), max_turns=4, tools={"analyst": ["calculate"]}),
    )
    script = write(
        "s.yaml",
        f"""
        roles:
          analyst:
            - {{tool: calculate, args: {{expression: "6*7"}}}}
            - "Second look: {LONG}"
          writer: ["Draft: {LONG}", "Final: {LONG}"]
        delay_s: 0.3
        """,
    )
    return team, script


def _shown(events: list[Event]) -> list[tuple[Any, ...]]:
    """What a run showed, in order, a turn's consecutive pieces as one (how text is cut into pieces depends on
    timing, and so does where the meter's reading of a call falls among its last pieces)."""
    shown: list[tuple[Any, ...]] = []
    for ev in events:
        if ev.type == "usage":
            continue
        item = (ev.type, getattr(ev, "source", ""), getattr(ev, "turn", None), ev.content)
        if shown and ev.type == "chunk" and shown[-1][:3] == item[:3]:
            shown[-1] = (*item[:3], shown[-1][3] + ev.content)
        else:
            shown.append(item)
    return shown


async def _run(write: Write) -> list[Event]:
    team, script = _team(write)
    return await collect(Conversation(team, model=f"scripted:{script}").start("Work out the figure"))


async def test_a_run_shows_the_same_events_in_the_same_order_with_or_without_the_runtime(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[str] = []
    take = direct.DirectChunks.take

    def spy(self: direct.DirectChunks, chunk: ModelClientStreamingChunkEvent) -> bool:
        went = take(self, chunk)
        if went:
            taken.append(chunk.content)
        return went

    monkeypatch.setattr(direct.DirectChunks, "take", spy)
    straight = await _run(write)
    chunks = [ev for ev in straight if isinstance(ev, ChunkEvent)]
    assert len(chunks) > 10 and [c.content for c in chunks] == taken  # every piece went straight to the run

    monkeypatch.setattr(direct, "ENABLED", False)
    taken.clear()
    through = await _run(write)
    assert not taken
    assert _shown(straight) == _shown(through)


async def test_each_message_follows_its_own_pieces_and_the_tool_work_before_them(write: Write) -> None:
    events = await _run(write)
    messages = [(i, ev) for i, ev in enumerate(events) if isinstance(ev, MessageEvent)]
    assert [m.source for _, m in messages] == ["analyst", "writer", "analyst", "writer"]
    start = 0
    for i, message in messages:
        if message.kind == "tool_summary":  # a tool's result, not written by the model: nothing streamed
            start = i + 1
            continue
        pieces = [ev for ev in events[start:i] if isinstance(ev, ChunkEvent)]
        # A turn's pieces come between the previous message and its own, all of them its own, with its number.
        assert {(p.source, p.turn) for p in pieces} <= {(message.source, message.turn)}
        assert "".join(p.content for p in pieces).strip().endswith(message.content.strip()[-20:])
        start = i + 1
    # The analyst's tool call and its result are shown before any text of the turn that uses them.
    call = next(i for i, ev in enumerate(events) if isinstance(ev, ToolCallEvent))
    result = next(i for i, ev in enumerate(events) if isinstance(ev, ToolResultEvent))
    first_piece = next(
        i for i, ev in enumerate(events) if isinstance(ev, ChunkEvent) and ev.source == "analyst"
    )
    assert call < result < first_piece
