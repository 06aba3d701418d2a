"""Patterns turn a validated team into an AutoGen team. The run does not care which."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TerminationCondition
from autogen_agentchat.teams import (
    BaseGroupChat,
    DiGraph,
    DiGraphBuilder,
    RoundRobinGroupChat,
    SelectorGroupChat,
    Swarm,
)
from autogen_core.models import ChatCompletionClient

from ...spec import TeamSpec
from .agent import AgentHost, ParleyNotice
from .consensus import consensus_graph
from .internals import RestartableGraphFlow
from .selector import Selector

__all__ = ["Selector", "build_team"]

NOTICES: list[type] = [ParleyNotice]
"""parley's own events travel in AutoGen's stream; every team must know their type."""


def build_team(
    spec: TeamSpec,
    agents: Sequence[AssistantAgent],
    termination: TerminationCondition,
    *,
    selector_client: ChatCompletionClient | None = None,
    selector_json_schema: bool = False,
    selector_avoid_repeat: bool = False,
    on_pick: Callable[[str, bool], None] = lambda name, fallback: None,
    host: AgentHost | None = None,
    on_notice: Callable[[str], None] = lambda text: None,
    ballots: Mapping[str, tuple[ChatCompletionClient, bool]] | None = None,
) -> BaseGroupChat:
    if spec.pattern == "hierarchical":
        # Only the manager is scheduled; the workers run inside its turns, as its tools.
        assert spec.hierarchical is not None
        manager = next(a for a in agents if a.name == spec.hierarchical.manager)
        return RoundRobinGroupChat([manager], termination_condition=termination, custom_message_types=NOTICES)
    if spec.pattern in ("round_robin", "loop"):
        # A loop is a rotation that the last role ends with its exit text (the run's stop text).
        return RoundRobinGroupChat(
            list(agents), termination_condition=termination, custom_message_types=NOTICES
        )
    if spec.pattern == "selector":
        if selector_client is None:
            raise ValueError("the selector pattern needs a selector model client")
        selector = Selector(
            spec,
            selector_client,
            json_schema=selector_json_schema,
            on_pick=on_pick,
            avoid_repeat=selector_avoid_repeat,
            on_notice=on_notice,
        )
        return SelectorGroupChat(
            list(agents),
            model_client=selector_client,
            termination_condition=termination,
            custom_message_types=NOTICES,
            selector_func=selector.select,
            allow_repeated_speaker=True,
        )
    if spec.pattern == "swarm":
        return Swarm(list(agents), termination_condition=termination, custom_message_types=NOTICES)
    if spec.pattern == "consensus":
        if host is None:
            raise ValueError("the consensus pattern needs an escalation host")
        participants, graph = consensus_graph(
            spec, agents, host, selector_client, selector_json_schema, ballots
        )
        return RestartableGraphFlow(
            participants, graph=graph, termination_condition=termination, custom_message_types=NOTICES
        )
    if spec.pattern in ("sequential", "fanout"):
        return RestartableGraphFlow(
            list(agents),
            graph=_graph(spec, agents),
            termination_condition=termination,
            custom_message_types=NOTICES,
        )
    raise ValueError(f"pattern {spec.pattern!r} is not available")


def _graph(spec: TeamSpec, agents: Sequence[AssistantAgent]) -> DiGraph:
    """Pipelines, and parallel branches with a join, as AutoGen's GraphFlow graphs."""
    builder = DiGraphBuilder()
    for agent in agents:
        builder.add_node(agent)
    if spec.pattern == "sequential":
        for a, b in itertools.pairwise(agents):
            builder.add_edge(a, b)
    else:
        assert spec.fanout is not None
        join = next(a for a in agents if a.name == spec.fanout.join)
        for branch in agents:
            if branch is not join:
                builder.add_edge(branch, join)  # the join waits for every branch (activation "all")
    return builder.build()
