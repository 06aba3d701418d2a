"""An AutoGen team's component config (`team.dump_component()`) as a parley team file's content."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ._agents import read_model, read_role
from ._component import Findings, Part, quote
from ._graph import read_graph
from ._terms import Limits, read_termination

__all__ = ["TEAMS", "Imported", "InteropError", "import_team", "team_name"]

TEAMS = {
    "RoundRobinGroupChat": "round_robin",
    "SelectorGroupChat": "selector",
    "Swarm": "swarm",
    "GraphFlow": "sequential",
}
"""AutoGen teams parley imports, and the pattern each becomes (a GraphFlow's depends on its graph)."""
OTHER_TEAMS = {
    "MagenticOneGroupChat": "its orchestrator plans with a ledger parley does not have; the hierarchical pattern "
    "(a manager delegating to workers) is the closest: write that team file by hand",
}
TEAM_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
SELECTOR_KEYS = ("selector_prompt", "allow_repeated_speaker", "max_selector_attempts")
DEFAULT_DESCRIPTION = "A team of agents"
"""AutoGen's description of a team that was given none (with or without a full stop)."""


class InteropError(ConfigError):
    """Parts of a file with no equivalent on the other side; nothing was written."""

    def __init__(self, source: str, problems: list[str], doing: str = "import") -> None:
        self.problems = problems
        count = f"{len(problems)} part{'s' if len(problems) != 1 else ''}"
        super().__init__(
            f"cannot {doing} {source} (nothing was written): {count} to change:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


@dataclass(frozen=True)
class Imported:
    """A team file's content (keys in the file's usual order) and what was left out on the way."""

    team: dict[str, Any]
    notes: list[str]


def team_name(given: object, fallback: str) -> str:
    """The team's name: the JSON's own (unless it is AutoGen's class name), else the file's, in parley's form.
    A name with a path separator is refused: it becomes a file name."""
    text = given if isinstance(given, str) and given.strip() and given not in TEAMS else fallback
    if any(c in text for c in "/\\\x00") or ".." in text:
        raise ConfigError(
            f"team name {quote(text)} holds a path separator or '..'; a team name becomes a file name: give "
            "another with --name NAME"
        )
    name = re.sub(r"\s+", "-", text.strip()).lower()
    if not TEAM_NAME.match(name) or len(name) > 64:
        raise ConfigError(
            f"team name {quote(text)} is not a parley team name (lower-case letters, digits, '-', '_' or '.', "
            "at most 64): give one with --name NAME"
        )
    return name


def import_team(
    data: dict[str, Any],
    *,
    source: str,
    name: str,
    tool_names: Collection[str],
    model: str | None = None,
) -> Imported:
    """The team file for an AutoGen team. Raises InteropError listing every part with no parley equivalent."""
    root = Part(data, "")
    if root.kind not in TEAMS:
        raise InteropError(source, [f"provider: {_not_a_team(root)}"])
    found = Findings()
    pattern = TEAMS[root.kind]
    team: dict[str, Any] = {"name": name}
    description = root.config.get("description")
    team["description"] = (
        " ".join(description.split())
        if isinstance(description, str) and description.strip().rstrip(".") not in ("", DEFAULT_DESCRIPTION)
        else f"Imported from AutoGen ({root.kind})"
    )
    team["pattern"] = pattern
    roles, models, manager = _roles(root, pattern, tool_names, found, with_model=model is None)
    if manager is not None and roles:
        _hierarchy(manager, team, roles)
    if root.kind == "GraphFlow" and roles:
        roles, models = _graph(root, team, roles, models, found)
    selector = None
    if pattern == "selector" and model is None:
        selector = read_model(
            root.child("model_client"), found, who="the selector", where=root.at("model_client")
        )
    if pattern == "selector":
        _selector_settings(root, found)
    _models(team, roles, models, selector, model, found)
    team["roles"] = roles
    termination = _termination(root, pattern, [r["name"] for r in roles], found)
    if termination:
        team["termination"] = termination
    if found.problems:
        raise InteropError(source, found.problems)
    return Imported(team=team, notes=found.notes)


def _not_a_team(root: Part) -> str:
    kind = root.kind
    if kind in OTHER_TEAMS:
        return f"{kind} has no parley equivalent: {OTHER_TEAMS[kind]}"
    if root.data.get("component_type") == "agent":
        return (
            f"{quote(kind)} is a single agent, not a team: put it in a RoundRobinGroupChat and export that "
            "(team.dump_component())"
        )
    return (
        f"{quote(root.provider)} is not a team parley imports (RoundRobinGroupChat, SelectorGroupChat, Swarm or "
        "GraphFlow, from autogen_agentchat.teams)"
    )


def _roles(
    root: Part, pattern: str, tool_names: Collection[str], found: Findings, *, with_model: bool
) -> tuple[list[dict[str, Any]], list[str | None], Part | None]:
    """The roles, their models, and the manager when the team is one agent calling the others as tools."""
    parts = _participants(root, found)
    workers: list[Part] | None = [] if root.kind == "RoundRobinGroupChat" and len(parts) == 1 else None
    read = [
        read_role(part, pattern, tool_names, found, with_model=with_model, workers=workers) for part in parts
    ]
    parts += workers or []
    read += [read_role(w, "hierarchical", tool_names, found, with_model=with_model) for w in workers or []]
    kept = [(p, r) for p, r in zip(parts, read, strict=True) if r is not None]
    _check_names([(p.path, r[0]) for p, r in kept], root, found)
    return [r[0] for _, r in kept], [r[1] for _, r in kept], parts[0] if workers else None


def _participants(root: Part, found: Findings) -> list[Part]:
    parts: list[Part] = []
    for where, value in root.children("participants"):
        part = Part.of(value, where)
        if part is None:
            found.problem(where, "not an agent component (no `provider`)")
        else:
            parts.append(part)
    if not parts:
        found.problem(root.at("participants"), "the team has no participants")
    return parts


def _check_names(roles: list[tuple[str, dict[str, Any]]], root: Part, found: Findings) -> None:
    """Every role named once, and every handoff to a role of the team (or the user)."""
    names = [role["name"] for _, role in roles]
    for i, (where, role) in enumerate(roles):
        if role["name"] in names[:i]:
            found.problem(f"{where}.config.name", f"two agents are named {role['name']!r}")
        for target in role.get("handoffs", []):
            if target != "user" and target not in names:
                found.problem(
                    root.at("participants"), f"{role['name']} hands off to {target!r}, not in the team"
                )


def _hierarchy(manager: Part, team: dict[str, Any], roles: list[dict[str, Any]]) -> None:
    """One agent calling the others as tools: parley's hierarchical pattern, its tool rounds as delegations."""
    team["pattern"] = "hierarchical"
    spec: dict[str, Any] = {"manager": roles[0]["name"]}
    rounds = manager.config.get("max_tool_iterations")
    if isinstance(rounds, int) and not isinstance(rounds, bool) and rounds > 1:
        spec["max_delegations"] = min(rounds, 50)
    team["hierarchical"] = spec


def _graph(
    root: Part, team: dict[str, Any], roles: list[dict[str, Any]], models: list[str | None], found: Findings
) -> tuple[list[dict[str, Any]], list[str | None]]:
    """A GraphFlow's pattern, with its roles in the graph's order (and a fan-out's join)."""
    read = read_graph(root, [r["name"] for r in roles], found)
    if read is None:
        return roles, models
    team["pattern"], order, join = read
    if join is not None:
        team["fanout"] = {"join": join}
    position = {r["name"]: i for i, r in enumerate(roles)}
    return [roles[position[n]] for n in order], [models[position[n]] for n in order]


def _selector_settings(root: Part, found: Findings) -> None:
    set_ = [k for k in SELECTOR_KEYS if k in root.config]
    if set_ or root.config.get("selector_func") or root.config.get("candidate_func"):
        found.note(
            "the selector's prompt and settings left out: parley's selector reads the roles' descriptions and a "
            "compact view of the conversation, and keeps one role from speaking too often (termination.max_in_a_row)"
        )


def _models(
    team: dict[str, Any],
    roles: list[dict[str, Any]],
    models: list[str | None],
    selector: str | None,
    given: str | None,
    found: Findings,
) -> None:
    """The team's model (the selector's, or the one most agents use) and each role that differs from it."""
    if given is not None:
        team["model"] = given
        found.note(f"the model clients in the JSON were replaced by --model {given}")
        return
    named = [m for m in models if m is not None]
    if not named and selector is None:
        return
    default = selector or Counter(named).most_common(1)[0][0]
    team["model"] = default
    for role, model in zip(roles, models, strict=True):
        if model is not None and model != default:
            role["model"] = model


def _termination(root: Part, pattern: str, names: list[str], found: Findings) -> dict[str, Any]:
    condition = root.child("termination_condition")
    limits = Limits() if condition is None else read_termination(condition, pattern == "swarm", found)
    if limits is None:
        return {}
    turns = root.config.get("max_turns")
    max_turns = limits.max_turns
    if isinstance(turns, int) and not isinstance(turns, bool) and turns > 0:
        max_turns = turns if max_turns is None else min(turns, max_turns)
    out: dict[str, Any] = {}
    if max_turns is not None:
        out["max_turns"] = max_turns
    elif pattern != "sequential":  # a GraphFlow ends with its graph
        found.note(
            "the AutoGen team had no message limit: parley's default, termination.max_turns: 10, applies"
        )
    if limits.stop_text:
        out["stop_text"] = limits.stop_text
        if limits.stop_from:
            out["stop_from"] = sorted(limits.stop_from)
            for who in sorted(limits.stop_from - set(names)):
                found.problem(
                    root.at("termination_condition"), f"the stop text's source {quote(who)} is no agent"
                )
    if limits.max_tokens:
        out["max_tokens"] = limits.max_tokens
    if limits.timeout_s:
        out["timeout_s"] = int(limits.timeout_s) if limits.timeout_s.is_integer() else limits.timeout_s
    return out
