"""What a team file's fields must agree on beyond each field's own rules: role names, patterns, triggers,
tools, models. Each check returns its problems, located by field path."""

from __future__ import annotations

import re
from collections.abc import Callable

from .._yaml import Loc, Located, did_you_mean
from ..errors import FileProblem, ModelStringError
from ._models import TRIGGERS, ConsensusSpec, RoleSpec, TeamSpec

__all__ = ["cross_check"]

STEP_NAMES = ("ballot", "tally", "verdict")
"""The consensus pattern's own steps, which no role may be named after."""
NEEDS_TWO_ROLES = ("selector", "fanout", "loop", "swarm", "consensus")
NO_TRIGGERS = ("sequential", "fanout", "swarm", "consensus", "hierarchical")
"""Patterns whose manager cannot wake an event-driven role."""


def cross_check(spec: TeamSpec, located: Located, tool_names: list[str] | None) -> list[FileProblem]:
    """Every problem between fields of a team file that parsed: duplicate roles, unknown roles, tools and
    models, and what the pattern needs."""
    from ..models import parse_model  # late import: parley.models builds on the team file's types

    problems: list[FileProblem] = []
    seen: dict[str, int] = {}
    for i, role in enumerate(spec.roles):
        if role.name in seen:
            problems.append(
                located.problem(
                    ("roles", i, "name"), f"duplicate role name '{role.name}' (also roles[{seen[role.name]}])"
                )
            )
        seen.setdefault(role.name, i)
        if role.model is not None:
            problems += _model_problem(parse_model, role.model, located, ("roles", i, "model"))
    if spec.model is not None:
        problems += _model_problem(parse_model, spec.model, located, ("model",))
    if tool_names is not None:
        problems += _tool_problems(spec, located, tool_names)
    problems += _termination_problems(spec, located)
    problems += _pattern_problems(spec, located)
    return problems


def _termination_problems(spec: TeamSpec, located: Located) -> list[FileProblem]:
    names = spec.role_names
    problems = [
        _unknown_role(located, ("termination", "stop_from", j), who, names)
        for j, who in enumerate(spec.termination.stop_from)
        if who not in names
    ]
    if spec.termination.stop_from and not spec.termination.stop_text:
        problems.append(located.problem(("termination", "stop_from"), "stop_from needs stop_text"))
    return problems


def _pattern_problems(spec: TeamSpec, located: Located) -> list[FileProblem]:
    names = spec.role_names
    problems: list[FileProblem] = []
    if spec.pattern in NEEDS_TWO_ROLES and len(spec.roles) < 2:
        problems.append(located.problem(("roles",), f"the {spec.pattern} pattern needs at least two roles"))
    if spec.pattern == "fanout":
        if spec.fanout is None:
            problems.append(located.problem(("pattern",), "the fanout pattern needs `fanout: {join: ROLE}`"))
        elif spec.fanout.join not in names:
            problems.append(
                located.problem(
                    ("fanout", "join"),
                    f"unknown role '{spec.fanout.join}'" + did_you_mean(spec.fanout.join, names),
                )
            )
    if spec.pattern == "loop" and not ((spec.loop and spec.loop.until) or spec.termination.stop_text):
        problems.append(
            located.problem(
                ("pattern",), "the loop pattern needs `loop: {until: TEXT}` or termination.stop_text"
            )
        )
    problems += _consensus_problems(spec, located) + _hierarchy_problems(spec, located)
    for i, role in enumerate(spec.roles):
        problems += _trigger_problems(spec, located, i, role) + _role_problems(spec, located, i, role)
    return problems


def _trigger_problems(spec: TeamSpec, located: Located, i: int, role: RoleSpec) -> list[FileProblem]:
    """What wakes an event-driven role (`on:`), and whether the team's pattern can wake it."""
    known = ", ".join(f"'{t}'" for t in TRIGGERS)
    problems = [
        located.problem(
            ("roles", i, "on", j), f"unknown trigger '{trigger}' (use {known} or 'ROLE finished')"
        )
        for j, trigger in enumerate(role.on)
        if not _trigger_ok(trigger, spec.role_names)
    ]
    if role.on and spec.pattern in NO_TRIGGERS:
        problems.append(
            located.problem(
                ("roles", i, "on"),
                f"event-driven roles work with round_robin, selector and loop teams, not {spec.pattern}",
            )
        )
    return problems


def _role_problems(spec: TeamSpec, located: Located, i: int, role: RoleSpec) -> list[FileProblem]:
    """What a role asks of its team's pattern: handoffs, sub-teams."""
    names = spec.role_names
    problems = [
        located.problem(
            ("roles", i, "handoffs", j),
            f"unknown role '{target}'" + did_you_mean(target, names) + " (or `user`)",
        )
        for j, target in enumerate(role.handoffs)
        if target != "user" and target not in names
    ]
    if role.team is not None and spec.pattern != "hierarchical":
        problems.append(located.problem(("roles", i, "team"), "sub-teams need `pattern: hierarchical`"))
    if role.team is not None and (role.tools or role.validate_ or role.on or role.handoffs or role.model):
        problems.append(
            located.problem(
                ("roles", i, "team"),
                "a sub-team role has no tools, validate, on, handoffs or model of its own: set them in the "
                "sub-team's file",
            )
        )
    if role.handoffs and spec.pattern != "swarm":
        problems.append(located.problem(("roles", i, "handoffs"), "handoffs need `pattern: swarm`"))
    return problems


def _trigger_ok(trigger: str, names: list[str]) -> bool:
    if trigger in TRIGGERS:
        return True
    who, _, what = trigger.rpartition(" ")
    return what == "finished" and who in names


def _unknown_role(located: Located, loc: Loc, who: str, names: list[str]) -> FileProblem:
    return located.problem(
        loc, f"unknown role '{who}'" + did_you_mean(who, names) + f" (roles: {', '.join(names)})"
    )


def _consensus_problems(spec: TeamSpec, located: Located) -> list[FileProblem]:
    if spec.pattern != "consensus":
        return (
            [located.problem(("consensus",), "consensus: needs `pattern: consensus`")]
            if spec.consensus
            else []
        )
    c = spec.consensus or ConsensusSpec()
    names = spec.role_names
    problems = [
        located.problem(
            ("roles", i, "name"),
            f"'{r.name}' is the name of a step of the consensus pattern; rename the role",
        )
        for i, r in enumerate(spec.roles)
        if r.name in STEP_NAMES
    ]
    problems += [
        _unknown_role(located, ("consensus", "voters", j), v, names)
        for j, v in enumerate(c.voters)
        if v not in names
    ]
    return problems + _vote_problems(spec, located, c)


def _vote_problems(spec: TeamSpec, located: Located, c: ConsensusSpec) -> list[FileProblem]:
    """The judge, the voters and the options of a consensus team."""
    problems: list[FileProblem] = []
    if c.judge is not None and c.judge not in spec.role_names:
        problems.append(_unknown_role(located, ("consensus", "judge"), c.judge, spec.role_names))
    if c.tie == "judge" and c.judge is None:
        problems.append(
            located.problem(
                ("consensus", "tie"), "tie: judge needs `judge: ROLE` (a role that does not vote)"
            )
        )
    if c.judge is not None and c.judge in spec.voters:
        problems.append(located.problem(("consensus", "judge"), f"the judge '{c.judge}' cannot also vote"))
    if len(spec.voters) < 2:
        problems.append(located.problem(("consensus",), "a vote needs at least two voters"))
    if len({o.strip().lower() for o in c.options}) != len(c.options):
        problems.append(located.problem(("consensus", "options"), "options must differ (case is ignored)"))
    return problems


def _hierarchy_problems(spec: TeamSpec, located: Located) -> list[FileProblem]:
    h = spec.hierarchical
    if spec.pattern != "hierarchical":
        return (
            [located.problem(("hierarchical",), "hierarchical: needs `pattern: hierarchical`")] if h else []
        )
    if h is None:
        return [
            located.problem(("pattern",), "the hierarchical pattern needs `hierarchical: {manager: ROLE}`")
        ]
    if h.manager not in spec.role_names:
        return [_unknown_role(located, ("hierarchical", "manager"), h.manager, spec.role_names)]
    if spec.role(h.manager).team is not None:
        return [
            located.problem(
                ("hierarchical", "manager"), "the manager must be a role of its own, not a sub-team"
            )
        ]
    if len(spec.roles) < 2:
        return [
            located.problem(("roles",), "the hierarchical pattern needs a manager and at least one worker")
        ]
    return []


def _tool_problems(spec: TeamSpec, located: Located, tool_names: list[str]) -> list[FileProblem]:
    named: list[tuple[Loc, str]] = [
        (("roles", i, "tools", j), t) for i, role in enumerate(spec.roles) for j, t in enumerate(role.tools)
    ]
    named += [(("approvals", t), t) for t in spec.approvals]
    servers = [m.name for m in spec.mcp]
    problems = [_tool_problem(located, loc, t, tool_names, servers) for loc, t in named]
    return [p for p in problems if p is not None]


def _tool_problem(
    located: Located, loc: Loc, t: str, tool_names: list[str], servers: list[str]
) -> FileProblem | None:
    server, dot, tool = t.partition(".")
    if dot and not (re.fullmatch(r"[A-Za-z0-9_-]+", tool) or tool == "*"):
        return located.problem(
            loc, f"'{t}' names no tool: write SERVER.TOOL or SERVER.* (e.g. files.write_file or files.*)"
        )
    if dot and server not in servers:
        declared = f" (declared: {', '.join(servers)})" if servers else " (declare it under mcp:)"
        return located.problem(
            loc, f"unknown MCP server '{server}' in '{t}'" + did_you_mean(server, servers) + declared
        )
    if not dot and t not in tool_names and t != "ask_human":  # ask_human is built in
        return located.problem(
            loc, f"unknown tool '{t}'" + did_you_mean(t, tool_names) + " (`parley tools` lists them)"
        )
    return None


def _model_problem(
    parse: Callable[[str], object], value: str, located: Located, loc: Loc
) -> list[FileProblem]:
    try:
        parse(value)
    except ModelStringError as exc:
        return [located.problem(loc, str(exc))]
    return []
