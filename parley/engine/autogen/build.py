"""A conversation's team as AutoGen agents: each role's model client, tools, context view and validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.teams import BaseGroupChat
from autogen_agentchat.tools import AgentTool, TeamTool
from autogen_core import CancellationToken

from ..._validate import Validator
from ...errors import ConfigError
from ...host import ASK_HUMAN
from ...patterns import system_prompt
from .agent import ParleyAgent
from .context import PolicyContext, Summariser
from .human import AskHumanTool
from .images import ImageContext
from .termination import RunGuard
from .tools import BoundTool

if TYPE_CHECKING:
    from ...conversation import Conversation
    from .session import TeamSession

__all__ = ["SUMMARISER", "SubTeamTool", "agents_of", "bind_tools"]

SUMMARISER = "summariser"
"""The name summary calls are metered under."""


class SubTeamTool(TeamTool):
    """A sub-team as a hierarchical worker: each sub-task is a fresh run of the sub-team, within its own limits."""

    def __init__(self, team: BaseGroupChat, guard: RunGuard, name: str, description: str) -> None:
        super().__init__(team, name, description, return_value_as_last_message=True)
        self._guard = guard

    async def run_stream(self, args: Any, cancellation_token: CancellationToken) -> Any:
        self._guard.new_run()
        self._guard.begin_segment()
        async for item in super().run_stream(args, cancellation_token):
            yield item


def bind_tools(conv: Conversation) -> dict[str, list[Any]]:
    """Each role's registered tools bound to the conversation (its approval gate, its run context)."""
    bound: dict[str, list[Any]] = {}
    for role in conv.team.roles:
        if not conv.pool.capabilities(conv.role_models[role.name]).tools:
            bound[role.name] = []
            continue
        tools: list[Any] = []
        for name in role.tools:
            if name == ASK_HUMAN:
                tools.append(AskHumanTool(role.name, conv))
            elif "." not in name:
                tools.append(BoundTool(conv.tool_def(name), role.name, conv))
        bound[role.name] = tools
    return bound


def _validators(conv: Conversation) -> dict[str, Validator]:
    out = {}
    for role in conv.team.roles:
        rules = role.validate_
        if rules is None:
            continue
        check = None
        if rules.check is not None:
            check = conv.registry.checks.get(rules.check)
            if check is None:
                known = ", ".join(sorted(conv.registry.checks)) or "none"
                raise ConfigError(
                    f"role '{role.name}': unknown check '{rules.check}' (declared with @check in "
                    f"tools/: {known})"
                )
        out[role.name] = Validator(rules, check)
    return out


def sees_images(session: TeamSession, role: str) -> bool:
    """Whether the role's model accepts images (its model_info says vision)."""
    return session.conv.pool.capabilities(session.conv.role_models[role]).vision


def _context_of(session: TeamSession, role: str, model: str) -> PolicyContext:
    """The role's bounded view (the team file's `context:`); summaries on the role's model, metered."""
    conv = session.conv
    policy = conv.team.context_of(role)
    summariser = None
    if policy.summary and policy.turns is not None:
        if model not in session.summarisers:
            session.summarisers[model] = Summariser(conv.pool.client(model, SUMMARISER))
        summariser = session.summarisers[model]
    if any("." in t for t in conv.team.role(role).tools) and sees_images(session, role):
        return ImageContext(policy.turns, summariser, conv.images)
    return PolicyContext(policy.turns, summariser)


async def _worker_tool(session: TeamSession, name: str, agents: Mapping[str, AssistantAgent]) -> Any:
    """A hierarchical worker as a tool the manager calls with a sub-task: one agent, or a whole sub-team."""
    conv = session.conv
    sub = conv.subteams.get(name)
    if sub is None:
        return AgentTool(agents[name], return_value_as_last_message=True)
    team, _ = await sub.engine.ensure_team()
    role = conv.team.role(name)
    return SubTeamTool(team, sub.engine.guard, name, role.description or sub.team.description or name)


async def agents_of(session: TeamSession, tools: Mapping[str, list[Any]]) -> list[ParleyAgent]:
    """The team's agents in the team file's order (sub-teams aside: they are the manager's tools)."""
    conv = session.conv
    validators = _validators(conv)
    agents: dict[str, ParleyAgent] = {}
    manager = conv.team.hierarchical.manager if conv.team.hierarchical else None
    # Workers first: a hierarchical manager calls them as tools (AutoGen's AgentTool), streaming their work.
    for role in sorted(conv.team.roles, key=lambda r: r.name == manager):
        if role.name in conv.subteams:
            continue
        role_tools = list(tools[role.name])
        rounds = 4 if ASK_HUMAN in role.tools else 1  # after an answer, the role goes on in the same turn
        if role.name == manager and conv.pool.capabilities(conv.role_models[role.name]).tools:
            role_tools += [await _worker_tool(session, w, agents) for w in conv.workers]
            rounds = conv.team.hierarchical.max_delegations if conv.team.hierarchical else rounds
        agents[role.name] = _agent(session, role.name, role_tools, rounds, validators.get(role.name))
    return [agents[r.name] for r in conv.team.roles if r.name in agents]


def _agent(
    session: TeamSession,
    name: str,
    tools: list[Any],
    rounds: int,
    validator: Validator | None,
) -> ParleyAgent:
    conv = session.conv
    role = conv.team.role(name)
    model = conv.role_models[name]
    caps = conv.pool.capabilities(model)
    return ParleyAgent(
        name,
        validator=validator,
        host=session,
        model_client=session.clients[name],
        tools=tools or None,
        description=role.description or name,
        system_message=system_prompt(conv.team, conv.limits, name),
        model_client_stream=True,
        # A scripted reply is one model call; a real model summarises what its tools returned.
        reflect_on_tool_use=bool(tools) and caps.reflects,
        max_tool_iterations=rounds,
        model_context=_context_of(session, name, model),
        handoffs=list(role.handoffs) if caps.tools and role.handoffs else None,
    )
