"""Patterns turn a validated team into an AutoGen team. The run does not care which."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TerminationCondition
from autogen_agentchat.teams import BaseGroupChat, RoundRobinGroupChat, SelectorGroupChat
from autogen_core.models import ChatCompletionClient

from ..spec import TeamSpec
from ._selector import Selector

__all__ = ["Selector", "build_team"]


def build_team(
    spec: TeamSpec,
    agents: Sequence[AssistantAgent],
    termination: TerminationCondition,
    *,
    selector_client: ChatCompletionClient | None = None,
    selector_json_schema: bool = False,
    selector_avoid_repeat: bool = False,
    on_pick: Callable[[str, bool], None] = lambda name, fallback: None,
) -> BaseGroupChat:
    if spec.pattern == "round_robin":
        return RoundRobinGroupChat(list(agents), termination_condition=termination)
    if spec.pattern == "selector":
        if selector_client is None:
            raise ValueError("the selector pattern needs a selector model client")
        selector = Selector(spec, selector_client, json_schema=selector_json_schema, on_pick=on_pick,
                            avoid_repeat=selector_avoid_repeat)
        return SelectorGroupChat(
            list(agents),
            model_client=selector_client,
            termination_condition=termination,
            selector_func=selector.select,
            allow_repeated_speaker=True,
        )
    raise ValueError(f"pattern {spec.pattern!r} is not available")
