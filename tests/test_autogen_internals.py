"""AutoGen's private internals parley relies on (parley/engine/autogen/internals.py): if an AutoGen release
moves one, this fails and says which, before any conversation misbehaves."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from _support import team_yaml
from autogen_agentchat.agents import AssistantAgent

from parley import Conversation
from parley.engine.autogen.internals import TOOL_CALL_PARAMETERS, graph_of, manager_name_of, participants_of

Write = Callable[[str, str], Path]


def test_the_tool_call_hook_still_takes_the_arguments_parley_checks() -> None:
    hook = getattr(AssistantAgent, "_execute_tool_call", None)
    assert hook is not None, (
        "AssistantAgent._execute_tool_call is gone: CheckedToolCalls no longer checks calls"
    )
    params = set(inspect.signature(hook).parameters)
    missing = [p for p in TOOL_CALL_PARAMETERS if p not in params]
    assert not missing, f"AssistantAgent._execute_tool_call no longer takes {missing}"


async def test_a_graph_team_still_shows_its_participants_graph_and_manager(write: Write) -> None:
    team = write("team.yaml", team_yaml("sequential", roles=("research", "write")))
    script = write("s.yaml", "roles:\n  research: ['facts']\n  write: ['draft']\n")
    conv = Conversation(team, model=f"scripted:{script}")
    built, _ = await conv.engine.ensure_team()
    assert [p.name for p in participants_of(built)] == ["research", "write"]
    assert set(graph_of(built).nodes) == {"research", "write"}
    name = manager_name_of(built)
    assert name in (await built.save_state())["agent_states"], (
        "the manager's state is no longer saved under its name"
    )
    await conv.close()
