"""What a conversation says about its models, once per thread: the embedded model's demo quality, and what roles
whose model cannot call tools will not do (one notice per kind and model, naming every role it concerns)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from .spec import TeamSpec

LOCAL = "local"
BIGGER = "`openai:gpt-4o-mini` or `ollama:qwen2.5`"
"""Models that call tools, as examples (in code spans: a colon before a letter is Markdown to Chainlit)."""
DEMO_NOTICE = (
    "The embedded model (SmolLM2, 135 million parameters) writes demo-quality text: it invents figures, "
    "repeats itself, loops and may recite its own instructions, however sure it sounds. Its messages are "
    f"marked *demo quality*. For real work choose a larger model (e.g. {BIGGER})."
)
"""Said once per thread whose roles run on the embedded model."""
DEMO_MARK = "*demo quality · embedded model*"
"""The line under each message the embedded model wrote."""


def demo_marked(text: str) -> str:
    """A message of the embedded model's, marked as demo quality (live, and on a reopened thread alike)."""
    return text if text.endswith(DEMO_MARK) else f"{text}\n\n{DEMO_MARK}"


def _its(model: str) -> str:
    return "the embedded model" if model == LOCAL else f"its model (`{model}`)"


def _names(roles: Sequence[str]) -> str:
    return ", ".join(roles)


def model_notices(
    team: TeamSpec, role_models: Mapping[str, str], calls_tools: Callable[[str], bool]
) -> list[str]:
    """The notices of a team on these models: demo quality first, then what cannot be done without tool
    calls, grouped by kind and model (a team of six tool users on the embedded model gets one notice, not six)."""
    out = [DEMO_NOTICE] if LOCAL in role_models.values() else []
    handoffs: dict[str, list[str]] = {}
    tools: dict[str, list[str]] = {}
    unused: dict[str, list[str]] = {}
    for role in team.roles:
        model = role_models[role.name]
        if calls_tools(model):
            continue
        if role.handoffs:
            handoffs.setdefault(model, []).append(role.name)
        if role.tools:
            tools.setdefault(model, []).append(role.name)
            unused.setdefault(model, []).extend(t for t in role.tools if t not in unused.get(model, []))
    manager = team.hierarchical.manager if team.hierarchical else None
    if manager is not None and not calls_tools(role_models[manager]):
        out.append(
            f"{manager}: {_its(role_models[manager])} cannot delegate (delegations are tool calls), so the "
            f"manager answers alone; the hierarchical pattern needs a model that calls tools (e.g. {BIGGER})"
        )
    for model, roles in handoffs.items():
        out.append(
            f"{_names(roles)}: {_its(model)} cannot hand the conversation over (handoffs are tool calls), so "
            f"the first speaker keeps the turn; the swarm pattern needs a model that calls tools (e.g. {BIGGER})"
        )
    for model, roles in tools.items():
        out.append(
            f"{_names(roles)}: {_its(model)} cannot call tools, so {_names(unused[model])} "
            f"{'stay' if len(unused[model]) > 1 else 'stays'} unused; "
            f"use a model that calls tools (e.g. {BIGGER})"
        )
    return out


def needs_tool_calls(team: TeamSpec) -> list[str]:
    """The roles the team's pattern cannot do without: a swarm's roles that hand over, a hierarchy's manager."""
    manager = team.hierarchical.manager if team.hierarchical else None
    return [r.name for r in team.roles if r.handoffs or r.name == manager]
