"""A parley team as an AutoGen component config, which `Team.load_component` accepts, where the team maps."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from ..models import parse_model
from ..spec import TeamSpec
from ._component import Findings
from ._graph import graph_component
from ._import import InteropError
from ._terms import termination_component

__all__ = ["DEFAULT_EXPORT_MODEL", "export_team"]

DEFAULT_EXPORT_MODEL = "openai:gpt-4o-mini"
"""The model written for roles of a team that names none (parley's default, the embedded model, is not AutoGen's)."""
GENERIC_INFO = {
    "vision": False,
    "function_calling": True,
    "json_output": False,
    "family": "unknown",
    "structured_output": False,
}
"""What AutoGen must be told about a model it does not know by name (an OpenAI-compatible server's)."""
OPEN_ENDED = ("consensus",)
TEAMS = {"swarm": "Swarm", "selector": "SelectorGroupChat", "sequential": "GraphFlow", "fanout": "GraphFlow"}
"""The AutoGen team of each pattern (a round robin for the others)."""
SELECTOR_PROMPT = (
    "You are in a role play game. The following roles are available:\n{roles}.\nRead the following conversation. "
    "Then select the next role from {participants} to play. Only return the role.\n\n{history}\n\nRead the above "
    "conversation. Then select the next role from {participants} to play. Only return the role.\n"
)
"""AutoGen's own selector prompt (autogen-agentchat 0.7), which its config requires."""


def _component(provider: str, kind: str, config: dict[str, Any], version: int = 1) -> dict[str, Any]:
    return {
        "provider": provider,
        "component_type": kind,
        "version": version,
        "component_version": version,
        "label": provider.rpartition(".")[2],
        "config": config,
    }


def export_team(spec: TeamSpec, *, model: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The AutoGen component for `spec`, and what was left out. Raises InteropError when the pattern has no
    AutoGen team, or a model has no AutoGen client."""
    found = Findings()
    source = str(spec.source or spec.name)
    if spec.pattern in OPEN_ENDED:
        raise InteropError(source, [f"pattern: {_no_team(spec.pattern)}"], doing="export")
    default = _default_model(spec, model, found)
    participants = [_agent(spec, role.name, model or role.model or default, found) for role in spec.roles]
    _dropped(spec, found)
    if found.problems:
        raise InteropError(source, found.problems, doing="export")
    config: dict[str, Any] = {"name": spec.name, "description": spec.description or "A team of agents."}
    config["participants"] = _arranged(spec, participants, config)
    if spec.pattern == "selector":
        config["model_client"] = _client(default, None, "the selector", found)
        config.update(selector_prompt=SELECTOR_PROMPT, allow_repeated_speaker=True, max_selector_attempts=3)
    config["termination_condition"] = _termination(spec, found)
    team = TEAMS.get(spec.pattern, "RoundRobinGroupChat")
    return _component(f"autogen_agentchat.teams.{team}", "team", config), found.notes


def _default_model(spec: TeamSpec, model: str | None, found: Findings) -> str:
    if model or spec.model:
        return model or spec.model or DEFAULT_EXPORT_MODEL
    found.note(
        f"the team names no model (parley's default is its embedded model, which AutoGen cannot load): "
        f"exported with {DEFAULT_EXPORT_MODEL}; choose another with --model"
    )
    return DEFAULT_EXPORT_MODEL


def _arranged(spec: TeamSpec, agents: list[dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    """The participants as the pattern's AutoGen team has them: a graph's in its order (and the graph in
    `config`), a hierarchy's manager alone with its workers as tools."""
    if spec.pattern == "hierarchical" and spec.hierarchical is not None:
        return [_manager(spec.hierarchical.manager, spec.hierarchical.max_delegations, agents)]
    if spec.pattern not in ("sequential", "fanout"):
        return agents
    join = spec.fanout.join if spec.pattern == "fanout" and spec.fanout else None
    order = [r.name for r in spec.roles if r.name != join] + ([join] if join else [])
    config["graph"] = graph_component(order, join)
    return [next(a for a in agents if a["config"]["name"] == n) for n in order]


def _termination(spec: TeamSpec, found: Findings) -> dict[str, Any]:
    """The team's limits as AutoGen conditions; a pipeline and a loop become a round robin with their own ends."""
    turns, stop_text = spec.termination.max_turns, spec.termination.stop_text
    if spec.pattern == "loop" and spec.loop is not None:
        stop_text = spec.loop.until or stop_text
        turns = min(turns, spec.loop.max_rounds * len(spec.roles))
        found.note("loop: exported as a round robin that ends on the exit text or after its rounds")
    if spec.termination.stop_from and stop_text:
        found.note(
            "stop_from left out: AutoGen's TextMentionTermination config keeps no sources, so any agent's "
            f"{stop_text!r} ends the AutoGen run"
        )
    return termination_component(
        max_turns=turns,
        stop_text=stop_text,
        max_tokens=spec.termination.max_tokens,
        timeout_s=spec.termination.timeout_s,
        handoff_user=spec.pattern == "swarm",
    )


def _no_team(pattern: str) -> str:
    closest = {
        "consensus": "its votes, tallies and debate rounds",
    }[pattern]
    return (
        f"the {pattern} pattern has no AutoGen team component (the closest is {closest}, which parley builds "
        "at run time): export a team of another pattern"
    )


def _agent(spec: TeamSpec, name: str, model: str, found: Findings) -> dict[str, Any]:
    role = spec.role(name)
    config: dict[str, Any] = {
        "name": name,
        "model_client": _client(model, spec.reply_cap(name), f"role {name}", found),
        "description": role.description or f"The {name} role.",
        "system_message": spec.prompts.get(name) or role.prompt,
        "model_client_stream": True,
        "reflect_on_tool_use": False,
        "tool_call_summary_format": "{result}",
        "max_tool_iterations": 1,
    }
    if role.handoffs:
        config["handoffs"] = [
            {
                "target": t,
                "description": f"Handoff to {t}.",
                "name": f"transfer_to_{t}",
                "message": f"Transferred to {t}, adopting the role of {t} immediately.",
            }
            for t in role.handoffs
        ]
    if role.tools:
        found.note(
            f"{name}'s tools {', '.join(role.tools)} left out: they are parley's, run with its approvals and "
            "sandbox; give the AutoGen agent tools of its own"
        )
    return _component("autogen_agentchat.agents.AssistantAgent", "agent", config, version=2)


def _manager(name: str, rounds: int, agents: list[dict[str, Any]]) -> dict[str, Any]:
    """The hierarchical pattern as AutoGen has it: the manager calls each worker as an AgentTool."""
    manager = next(a for a in agents if a["config"]["name"] == name)
    tools = [
        _component(
            "autogen_agentchat.tools.AgentTool", "tool", {"agent": a, "return_value_as_last_message": True}
        )
        for a in agents
        if a is not manager
    ]
    bench = _component(
        "autogen_core.tools.StaticStreamWorkbench", "workbench", {"tools": tools, "tool_overrides": {}}
    )
    manager["config"].update(workbench=[bench], max_tool_iterations=rounds)
    return manager


def _client(model: str, reply_cap: int | None, who: str, found: Findings) -> dict[str, Any]:
    try:
        ref = parse_model(model)
    except ConfigError as exc:
        found.problem(who, str(exc))
        return {}
    config: dict[str, Any] = {"model": ref.name}
    if reply_cap is not None:
        config["max_tokens"] = reply_cap
    if ref.backend == "openai":
        return _component("autogen_ext.models.openai.OpenAIChatCompletionClient", "model", config)
    if ref.backend == "compatible":
        config.update(base_url=ref.base_url, model_info=GENERIC_INFO)
        return _component("autogen_ext.models.openai.OpenAIChatCompletionClient", "model", config)
    if ref.backend == "azure":
        config.update(model=os.environ.get("PARLEY_AZURE_MODEL") or ref.name, azure_deployment=ref.name)
        config.update({k: v for k, v in _azure_env().items() if v})
        return _component("autogen_ext.models.openai.AzureOpenAIChatCompletionClient", "model", config)
    if ref.backend == "anthropic":
        return _component("autogen_ext.models.anthropic.AnthropicChatCompletionClient", "model", config)
    if ref.backend == "ollama":
        config.pop("max_tokens", None)
        return _component("autogen_ext.models.ollama.OllamaChatCompletionClient", "model", config)
    found.problem(
        f"{who}'s model",
        f"{model!r} has no AutoGen model client (the embedded and scripted models are parley's own): export "
        f"with --model MODEL, e.g. --model {DEFAULT_EXPORT_MODEL}",
    )
    return {}


def _azure_env() -> dict[str, str | None]:
    return {
        "azure_endpoint": os.environ.get("AZURE_OPENAI_ENDPOINT"),
        "api_version": os.environ.get("OPENAI_API_VERSION") or os.environ.get("AZURE_OPENAI_API_VERSION"),
    }


def _dropped(spec: TeamSpec, found: Findings) -> None:
    """What the team file says that an AutoGen component cannot hold."""
    per_role = {
        "validate": [r.name for r in spec.roles if r.validate_],
        "context": [r.name for r in spec.roles if r.context],
        "on (event-driven roles)": [r.name for r in spec.roles if r.on],
    }
    for what, names in per_role.items():
        if names:
            found.note(f"{what} of {', '.join(names)} left out: AutoGen has no equivalent")
    team_level = {
        "approvals": bool(spec.approvals),
        "mcp servers": bool(spec.mcp),
        "starters": bool(spec.starters),
        "human (question time-out and default answer)": spec.human.question_timeout_s != 300,
    }
    left = [what for what, set_ in team_level.items() if set_]
    if left:
        found.note(f"{', '.join(left)} left out: AutoGen's team config has no place for them")
    if any(r.team for r in spec.roles):
        found.problem("roles", "a sub-team role has no AutoGen equivalent in a flat team")
