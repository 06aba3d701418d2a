"""Every use of AutoGen's private internals, in one place, each with why AutoGen offers no public way.

tests/test_autogen_internals.py fails loudly (naming what changed) when an AutoGen release moves one of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.teams import BaseGroupChat, GraphFlow

from .tools import checked_call

__all__ = ["CheckedToolCalls", "RestartableGraphFlow", "graph_of", "manager_name_of", "participants_of"]

TOOL_CALL_PARAMETERS = (
    "tool_call",
    "workbench",
    "handoff_tools",
    "agent_name",
    "cancellation_token",
    "stream",
)
"""The keyword arguments of AssistantAgent._execute_tool_call that CheckedToolCalls relies on."""


def participants_of(team: BaseGroupChat) -> list[Any]:
    """The team's participants, in order. (A team's state is keyed by them; AutoGen keeps the list private.)"""
    return list(team._participants)  # pyright: ignore[reportPrivateUsage]


def graph_of(team: GraphFlow) -> Any:
    """A graph team's DiGraph. (Needed to rebuild where a graph stood; AutoGen keeps it private.)"""
    return team._graph  # pyright: ignore[reportPrivateUsage]


def manager_name_of(team: BaseGroupChat) -> str:
    """The name the team's manager's state is saved under. (Private in AutoGen.)"""
    return str(team._group_chat_manager_name)  # pyright: ignore[reportPrivateUsage]


class CheckedToolCalls(AssistantAgent):
    """An AssistantAgent whose tool calls are checked before AutoGen runs them, and whose cancelled tool calls do
    not hold the agent. AutoGen's only hook for one tool call is the private `_execute_tool_call`; a workbench
    wrapper would not see hand-offs, and not the stream AutoGen waits on."""

    @staticmethod
    async def _execute_tool_call(**kwargs: Any) -> Any:
        # A model's call is checked before AutoGen runs it: a tool it was not given, or arguments that are not
        # one JSON object, become the call's error result (see parley._calls.call_problem).
        try:
            return await checked_call(AssistantAgent._execute_tool_call, **kwargs)  # pyright: ignore[reportPrivateUsage]
        except asyncio.CancelledError:
            # AutoGen reads an answer's tool calls' streamed events until a None says they are done; a cancellation
            # (stop, time-out, token budget) raised past that point left the agent waiting forever, holding its whole
            # team. Say done, so the cancellation reaches the agent too.
            kwargs["stream"].put_nowait(None)
            raise


class RestartableGraphFlow(GraphFlow):
    """A GraphFlow that a checkpoint taken in the middle of a step can restore.

    A run that stops while some roles of a step are still working (its budget or clock ran out, the human stopped
    or interrupted it) leaves as its last checkpoint a graph with no node left to run: the others had been started,
    and AutoGen does not save who was still working. Restored as it is, the graph would end the next run at once,
    without a turn. Restored by this class, it starts over from its entry, with everything said so far in view, as
    after a run that finished."""

    async def load_state(self, state: Mapping[str, Any]) -> None:
        agents = state.get("agent_states")
        name = manager_name_of(self)
        manager = agents.get(name) if isinstance(agents, Mapping) else None
        if isinstance(manager, Mapping) and "ready" in manager and not manager["ready"]:
            graph = graph_of(self)
            start = graph.get_start_nodes()
            manager = {
                **manager,
                "remaining": {target: dict(groups) for target, groups in graph.get_remaining_map().items()},
                "enqueued_any": {
                    node: dict.fromkeys(groups, False) for node, groups in manager["enqueued_any"].items()
                },
                "ready": [n for n in graph.nodes if n in start],
            }
            state = {**state, "agent_states": {**agents, name: manager}}  # type: ignore[dict-item]
        await super().load_state(state)
