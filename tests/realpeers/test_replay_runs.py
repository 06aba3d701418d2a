"""Runs over the replay server checked the way a strict real server checks them: a role that speaks three
times in a row (llama.cpp's server refuses two assistant messages ending a request), a tool step with
AutoGen's reflection, and the Anthropic shape's single system prompt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import team_yaml
from autogen_core.models import UserMessage

from parley import Conversation
from parley.cli import main
from parley.engine.autogen.models.replay import replay_server
from parley.events import ChunkEvent, MessageEvent, ValidationEvent

Write = Callable[[str, str], Path]


@pytest.mark.parametrize("via", ["openai", "anthropic"])
async def test_a_role_that_speaks_three_times_in_a_row_is_answered_each_time(
    via: str, write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_SCRIPTED_VIA", via)
    team = write("team.yaml", team_yaml("selector", ("alpha", "beta"), max_turns=3))
    script = write(
        "s.yaml",
        """
        roles:
          alpha: ["First point.", "Second point.", "Third point."]
        selector: [alpha, alpha, alpha]
    """,
    )
    before = replay_server().served[via]
    conv = Conversation(team, model=f"scripted:{script}")
    result = await conv.start("Make three points").wait()
    said = [e.content for e in conv.history if isinstance(e, MessageEvent) and e.source == "alpha"]
    assert result.stop_reason == "max_turns", result
    assert said == ["First point.", "Second point.", "Third point."]
    assert replay_server().served[via] - before >= 6  # three picks, three answers, all over HTTP
    [model] = conv.pool.scripts
    asks = [c.messages for c in model.calls if c.who == "alpha"]
    assert len(asks) == 3 and all(isinstance(m[-1], UserMessage) for m in asks), [m[-1] for m in asks]


async def test_stop_mid_answer_closes_the_stream_and_the_server_stops_sending(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_SCRIPTED_VIA", "openai")
    team = write("team.yaml", team_yaml("round_robin", ("alpha", "beta"), max_turns=2))
    words = " ".join(f"word{i}" for i in range(200))
    script = write(
        "s.yaml",
        f"""
        roles:
          alpha: ["{words}"]
        delay_s: 60
    """,
    )
    cut_before = replay_server().served["cut"]
    conv = Conversation(team, model=f"scripted:{script}")
    run = conv.start("Talk at length")
    async for event in run:
        if isinstance(event, ChunkEvent):
            run.stop()  # the first streamed words are in: the answer is under way, 59 s of it left
    result = await run.wait()
    assert result.stop_reason == "stopped", result
    assert not any(isinstance(e, MessageEvent) and e.source == "alpha" for e in conv.history)
    # The server notices the closed connection by itself, on its own thread: wait for it, bounded.
    for _ in range(500):
        if replay_server().served["cut"] > cut_before:
            break
        await asyncio.sleep(0.01)
    assert replay_server().served["cut"] == cut_before + 1


def _said(conv: Conversation) -> list[tuple[str, str, object]]:
    return [
        (e.type, e.source, e.content if isinstance(e, MessageEvent) else e.passed)  # type: ignore[attr-defined]
        for e in conv.history
        if isinstance(e, (MessageEvent, ValidationEvent))
    ]


async def test_a_validated_role_s_tool_step_is_not_validated_on_either_path(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn of tool work is not the role's answer (parley._turns): its rules check neither the scripted
    model's tool summary nor a real model's reflection on the results."""
    team = write(
        "team.yaml", team_yaml("round_robin", ("alpha", "beta"), max_turns=3, tools={"alpha": ["team_notes"]})
    )
    text = team.read_text(encoding="utf-8").replace(
        "    tools: [team_notes]\n", "    tools: [team_notes]\n    validate: {contains: [DONE]}\n"
    )
    team.write_text(text, encoding="utf-8")
    script = write(
        "s.yaml",
        """
        roles:
          alpha:
            - {tool: team_notes, args: {action: add, text: "a note"}}
            - "All DONE"
          beta: ["ok"]
    """,
    )
    runs = {}
    for via in ("direct", "openai"):
        monkeypatch.setenv("PARLEY_SCRIPTED_VIA", via)
        conv = Conversation(team, model=f"scripted:{script}")
        await conv.start("Take a note").wait()
        runs[via] = _said(conv)
    assert runs["direct"] == [
        ("message", "alpha", "Note 1 added."),
        ("message", "beta", "ok"),
        ("validation", "alpha", True),
        ("message", "alpha", "All DONE"),
    ]
    assert runs["openai"] == runs["direct"]


async def test_a_call_with_arguments_that_are_not_an_object_does_not_end_the_run_over_anthropic(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_SCRIPTED_VIA", "anthropic")
    team = write(
        "team.yaml", team_yaml("round_robin", ("clerk",), max_turns=2, tools={"clerk": ["team_notes"]})
    )
    script = write(
        "s.yaml",
        """
        roles:
          clerk:
            - {tool: team_notes, raw_args: "[1, 2]"}
            - "I will send an object next time."
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    result = await conv.start("Take a note").wait()
    assert result.stop_reason == "max_turns", result.detail
    said = [e.content for e in conv.history if isinstance(e, MessageEvent)]
    assert said[-1] == "I will send an object next time."


def test_an_unknown_protocol_is_refused_naming_the_choices(
    write: Write, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PARLEY_SCRIPTED_VIA", "http")
    team = write("team.yaml", team_yaml("round_robin", ("alpha",), max_turns=1))
    script = write("s.yaml", "roles: {alpha: [hi]}\n")
    assert main(["run", str(team), "Go", "--model", f"scripted:{script}", "--no-save"]) == 2
    assert (
        "PARLEY_SCRIPTED_VIA='http' is not a protocol: use openai, anthropic or direct"
        in capsys.readouterr().err
    )
