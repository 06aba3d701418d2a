"""Team files: the documented YAML format, validated with line-numbered errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._yaml import Located, did_you_mean, load_located, pydantic_problems
from .errors import FileProblem, TeamFileError
from .paths import inside, project_root

__all__ = ["PATTERNS", "TRIGGERS", "ConsensusSpec", "HierarchicalSpec", "McpServerSpec", "RoleSpec", "TeamSpec",
           "TerminationSpec", "ValidationSpec", "load_team_file"]

PATTERNS = ("round_robin", "selector", "sequential", "fanout", "loop", "swarm", "hierarchical", "consensus")
TRIGGERS = ("stage finished", "tool failed", "validation failed", "file written")
"""What can wake an event-driven role (`on:`), besides `ROLE finished`."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEAM_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


def _outside_refs(schema: Any, where: str = "json_schema") -> list[tuple[str, str]]:
    """Every reference in a schema that does not point inside it (`#...`), with where it is."""
    found: list[tuple[str, str]] = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in _REF_KEYS and isinstance(value, str) and not value.startswith("#"):
                found.append((f"{where}.{key}", value))
            found += _outside_refs(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            found += _outside_refs(value, f"{where}[{i}]")
    return found


def _uses(schema: Any, keyword: str) -> bool:
    """Whether a keyword appears anywhere in a schema."""
    if isinstance(schema, dict):
        return keyword in schema or any(_uses(v, keyword) for v in schema.values())
    return isinstance(schema, list) and any(_uses(v, keyword) for v in schema)


class ValidationSpec(_Strict):
    """Rules a role's answer must pass; a failure goes back to the role as a correction request."""

    json_schema: dict[str, Any] | None = None
    """The answer must be JSON matching this schema (a fenced ```json block is accepted)."""
    regex: str | None = None
    """The answer must contain a match of this regular expression."""
    contains: list[str] = Field(default_factory=list)
    """Texts the answer must contain (case-insensitive)."""
    not_contains: list[str] = Field(default_factory=list)
    """Texts the answer must not contain (case-insensitive)."""
    check: str | None = None
    """A named Python check from `tools/` (declared with `@check`)."""
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    """Corrections asked for before the failure is escalated to a human."""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            import regex  # the engine that runs it, with a time limit (parley/_validate.py)

            try:
                regex.compile(v)
            except regex.error as exc:
                raise ValueError(f"regex {v!r} does not compile: {exc}") from None
        return v

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            import jsonschema

            try:
                jsonschema.validators.validator_for(v).check_schema(v)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"json_schema is not a valid JSON schema: {exc.message}") from None
            if _uses(v, "unevaluatedProperties") and _uses(v, "patternProperties"):
                raise ValueError("json_schema combines unevaluatedProperties with patternProperties, whose patterns "
                                 "parley cannot give a time limit there: use additionalProperties instead")
            outside = _outside_refs(v)
            if outside:
                where, ref = outside[0]
                raise ValueError(f"json_schema refers outside itself ({where}: {ref!r}): parley never fetches "
                                 "http(s):// or file:// schemas; copy the definition into the schema under $defs "
                                 "and refer to it as '#/$defs/NAME'")
        return v

    @model_validator(mode="after")
    def _some_rule(self) -> ValidationSpec:
        if not (self.json_schema or self.regex or self.contains or self.not_contains or self.check):
            raise ValueError("give at least one rule: json_schema, regex, contains, not_contains or check")
        return self


DEFAULT_WINDOW = 4
DEFAULT_MAX_REPLY_TOKENS = 1024
"""Longest model answer per call unless a team or role says otherwise: long enough for a report section,
short enough that a looping model stops within a minute or two."""


class ContextSpec(_Strict):
    """What a role's model sees of the conversation. The task and the latest human messages are always kept."""

    window: Annotated[int, Field(ge=1, le=500)] | Literal["all"] = DEFAULT_WINDOW
    """How many recent turns the role sees (a tool call with its results is one turn); `all` for the whole history."""
    summary: bool = False
    """Replace the turns that fell out of the window by a running summary (one extra, metered model call
    every few turns)."""

    @property
    def turns(self) -> int | None:
        return None if self.window == "all" else self.window


class RoleSpec(_Strict):
    """One agent of a team."""

    name: str
    """Identifier used as the speaker's name (letters, digits, underscore)."""
    description: str = ""
    """One line the selector reads to decide who speaks next."""
    prompt: str = ""
    """A file under `prompts/` (or next to the team file), or the prompt text itself."""
    team: str | None = None
    """Hierarchical pattern: this worker is a whole sub-team (a team name or file), not one agent."""
    tools: list[str] = Field(default_factory=list)
    """Tool names from the registry that this role may call."""
    model: str | None = None
    """Optional model string for this role only; the run's model otherwise."""
    handoffs: list[str] = Field(default_factory=list)
    """Swarm pattern: roles (or `user`) this role may hand the conversation to."""
    validate_: ValidationSpec | None = Field(default=None, alias="validate")
    """Rules every answer of this role must pass."""
    context: ContextSpec | None = None
    """This role's view of the conversation; the team's `context:` otherwise."""
    max_reply_tokens: Annotated[int, Field(ge=1, le=200_000)] | None = None
    """Longest answer this role's model may write per call, in tokens; the team's `max_reply_tokens` otherwise."""
    context_tokens: Annotated[int, Field(ge=256)] | None = None
    """This role's model's context window in tokens, when the backend cannot tell parley; the team's otherwise."""
    on: list[str] = Field(default_factory=list)
    """Event-driven: what wakes this role (`ROLE finished`, `stage finished`, `tool failed`,
    `validation failed`, `file written`) instead of the manager scheduling it."""

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                f"role name {v!r} must be an identifier (letters, digits, underscore; no spaces or dashes)"
            )
        return v


class McpServerSpec(_Strict):
    """An MCP server whose tools roles can be granted as `SERVER.TOOL` or `SERVER.*`."""

    name: str
    """Identifier used in grants."""
    command: str | None = None
    """Program to start (stdio transport)."""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment for the server process (nothing else of parley's is passed on)."""
    url: str | None = None
    """Streamable-HTTP endpoint, instead of `command`."""
    headers: dict[str, str] = Field(default_factory=dict)
    """HTTP only: headers sent with every request (auth). `${VAR}` takes the value from the environment, so
    secrets stay out of the team file; header values never reach events, logs or the store."""
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """How long one tool call (or the connection) may take before it fails with a time-out."""
    max_result_chars: Annotated[int, Field(ge=100, le=10_000_000)] = 20_000
    """Longest tool result passed to the model; a longer one is cut, and the cut is stated in the result."""

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"MCP server name {v!r} must be an identifier (letters, digits, underscore)")
        return v

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (stdio) or url (HTTP), not both or neither")
        if self.headers and self.url is None:
            raise ValueError("headers are for an HTTP server (url:); a stdio server takes env: instead")
        return self


class FanoutSpec(_Strict):
    """Fan-out pattern: every role but `join` answers in parallel; `join` waits for all of them."""

    join: str


class LoopSpec(_Strict):
    """Loop pattern: the roles speak in order, round after round, until the last one says `until`."""

    until: str | None = None
    """Text that ends the loop when the last role says it (default: termination.stop_text)."""
    max_rounds: Annotated[int, Field(ge=1)] = 3
    on_max_rounds: Literal["stop", "escalate"] = "stop"
    """Still no agreement after `max_rounds`: stop, or escalate to a human with each role's last position
    (the human picks one, writes the answer, or grants another `max_rounds`)."""


class ConsensusSpec(_Strict):
    """Consensus pattern: voters answer in parallel and independently; a strict majority decides."""

    voters: list[str] = Field(default_factory=list)
    """Roles that vote (default: every role but the judge)."""
    options: list[str] = Field(default_factory=list)
    """The answers allowed; each vote is normalised to one of them. Free answers when empty."""
    debate_rounds: Annotated[int, Field(ge=0, le=5)] = 1
    """Rounds in which the voters, seeing each other's answers, may change their minds when there is no majority."""
    tie: Literal["judge", "manager", "escalate"] = "escalate"
    """Who settles a vote still without a majority: the `judge` role, the manager model, or a human."""
    judge: str | None = None
    """The role that settles ties (with `tie: judge`); it does not vote."""


class HierarchicalSpec(_Strict):
    """Hierarchical pattern: a manager plans, delegates sub-tasks to workers, and integrates their answers."""

    manager: str
    """The role that delegates; every other role is a worker it can call."""
    max_delegations: Annotated[int, Field(ge=1, le=50)] = 8
    """Delegation rounds the manager may make within one of its turns."""


class HumanSpec(_Strict):
    """How the team waits for its human."""

    question_timeout_s: Annotated[float, Field(gt=0)] | None = 300
    """How long a role's question (ask_human) waits before the role goes on with `default_answer`."""
    default_answer: str = "No answer from the human in time: go on with your best assumption and say what it is."


class TerminationSpec(_Strict):
    """When a run ends. Every limit is checked on every pattern."""

    max_turns: Annotated[int, Field(ge=1)] = 10
    """Agent messages per run."""
    stop_text: str | None = None
    """Text that ends the run when a role in `stop_from` says it."""
    stop_from: list[str] = Field(default_factory=list)
    """Roles allowed to end the run with `stop_text` (all roles when empty)."""
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    """Prompt plus completion tokens over every model call, the selector's included."""
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    """Wall-clock limit, enforced even while a model is generating."""
    max_in_a_row: Annotated[int, Field(ge=2)] = 3
    """Loop guard: after this many answers in a row from one role (tool results aside), the selector
    must pick another."""
    max_repeats: Annotated[int, Field(ge=2)] = 3
    """Loop guard: a role that says the same thing this many times in a row ends the run (stop reason `loop`)."""


class TeamSpec(_Strict):
    """A team file."""

    name: str
    """Unique name, used on the command line."""
    description: str = ""
    pattern: Literal["round_robin", "selector", "sequential", "fanout", "loop", "swarm", "hierarchical", "consensus"]
    """How the manager picks the next speaker."""
    roles: Annotated[list[RoleSpec], Field(min_length=1)]
    termination: TerminationSpec = Field(default_factory=TerminationSpec)
    starters: list[str] = Field(default_factory=list)
    """Example tasks offered by the UI."""
    model: str | None = None
    """Default model string for every role of this team."""
    fanout: FanoutSpec | None = None
    loop: LoopSpec | None = None
    human: HumanSpec = Field(default_factory=HumanSpec)
    context: ContextSpec = Field(default_factory=ContextSpec)
    """Every role's view of the conversation, unless the role sets its own."""
    consensus: ConsensusSpec | None = None
    hierarchical: HierarchicalSpec | None = None
    mcp: list[McpServerSpec] = Field(default_factory=list)
    """MCP servers this team's roles may use."""
    max_reply_tokens: Annotated[int, Field(ge=1, le=200_000)] | None = None
    """Longest answer any role's model may write per call, in tokens (default: DEFAULT_MAX_REPLY_TOKENS)."""
    context_tokens: Annotated[int, Field(ge=256)] | None = None
    """The models' context window in tokens, when the backend cannot tell parley."""
    approvals: dict[str, Literal["required", "never"]] = Field(default_factory=dict)
    """Per tool: override whether a human must approve each call (`required`) or not (`never`)."""
    source: Path | None = Field(default=None, exclude=True)
    """The file this team was loaded from (set by the loader)."""
    prompts: dict[str, str] = Field(default_factory=dict, exclude=True)
    """Resolved prompt text per role (set by the loader)."""

    @field_validator("name")
    @classmethod
    def _team_name(cls, v: str) -> str:
        if not _TEAM_NAME.match(v):
            raise ValueError(f"team name {v!r} must be lower-case letters, digits, '-', '_' or '.'")
        return v

    def role(self, name: str) -> RoleSpec:
        return next(r for r in self.roles if r.name == name)

    def reply_cap(self, name: str) -> int:
        """The longest answer role `name` may write per model call, in tokens."""
        return self.role(name).max_reply_tokens or self.max_reply_tokens or DEFAULT_MAX_REPLY_TOKENS

    def context_window(self, name: str) -> int | None:
        """Role `name`'s model's context window as the team file states it (None: ask the backend)."""
        return self.role(name).context_tokens or self.context_tokens

    def context_of(self, name: str) -> ContextSpec:
        return self.role(name).context or self.context

    @property
    def role_names(self) -> list[str]:
        return [r.name for r in self.roles]

    @property
    def scheduled(self) -> list[RoleSpec]:
        """The roles the manager schedules (event-driven roles wait for their triggers instead)."""
        return [r for r in self.roles if not r.on]

    @property
    def voters(self) -> list[str]:
        """Consensus pattern: who votes."""
        c = self.consensus or ConsensusSpec()
        return c.voters or [r.name for r in self.scheduled if r.name != c.judge]


_ALL_KEYS = sorted({*RoleSpec.model_fields, "validate", *TerminationSpec.model_fields, *TeamSpec.model_fields,
                    *McpServerSpec.model_fields, *FanoutSpec.model_fields, *LoopSpec.model_fields,
                    *ValidationSpec.model_fields, *ConsensusSpec.model_fields, *HumanSpec.model_fields, *ContextSpec.model_fields, *HierarchicalSpec.model_fields} - {"validate_"})


def load_team_file(path: Path | str, *, tool_names: list[str] | None = None, display: str | None = None,
                   check_names: list[str] | None = None) -> TeamSpec:
    """Load and check a team file. Raises TeamFileError listing every problem with its line."""
    path = Path(path)
    located = load_located(path, display)
    if not isinstance(located.data, dict):
        raise TeamFileError([located.problem((), "a team file must be a mapping (name:, pattern:, roles: ...)")])
    data = {k: v for k, v in located.data.items() if k not in ("source", "prompts")}
    problems: list[FileProblem] = [
        located.problem((k,), f"unknown key '{k}'") for k in located.data if k in ("source", "prompts")
    ]
    try:
        spec = TeamSpec.model_validate(data)
    except ValidationError as exc:
        problems += pydantic_problems(located, exc, _ALL_KEYS)
        raise TeamFileError(problems) from None
    problems += _cross_check(spec, located, tool_names)
    if check_names is not None:
        for i, role in enumerate(spec.roles):
            name = role.validate_.check if role.validate_ else None
            if name is not None and name not in check_names:
                problems.append(located.problem(("roles", i, "validate", "check"), f"unknown check '{name}'"
                                                + did_you_mean(name, check_names) + " (declare it with @check in tools/)"))
    prompts = {}
    for i, role in enumerate(spec.roles):
        if role.team is not None:
            prompts[role.name] = ""
            continue
        if not role.prompt.strip():
            problems.append(located.problem(("roles", i), f"role '{role.name}' needs a prompt (or `team:` for a sub-team)"))
            continue
        escape = _escaping_prompt(role.prompt, path.parent)
        if escape is not None:
            problems.append(located.problem(("roles", i, "prompt"), escape))
            continue
        text = _resolve_prompt(role.prompt, path.parent)
        if text is None:
            problems.append(located.problem(("roles", i, "prompt"), _missing_prompt(role.prompt, path.parent)))
        else:
            prompts[role.name] = text
    if problems:
        raise TeamFileError(problems)
    return spec.model_copy(update={"source": path, "prompts": prompts})


def _cross_check(spec: TeamSpec, located: Located, tool_names: list[str] | None) -> list[FileProblem]:
    from .models import parse_model  # late import: models imports spec types

    problems = []
    seen: dict[str, int] = {}
    for i, role in enumerate(spec.roles):
        if role.name in seen:
            problems.append(
                located.problem(("roles", i, "name"), f"duplicate role name '{role.name}' (also roles[{seen[role.name]}])")
            )
        seen.setdefault(role.name, i)
        if role.model is not None:
            problems += _model_problem(parse_model, role.model, located, ("roles", i, "model"))
    if spec.model is not None:
        problems += _model_problem(parse_model, spec.model, located, ("model",))
    if tool_names is not None:
        problems += _tool_problems(spec, located, tool_names)
    names = spec.role_names
    for j, who in enumerate(spec.termination.stop_from):
        if who not in names:
            problems.append(
                located.problem(("termination", "stop_from", j),
                                f"unknown role '{who}'" + did_you_mean(who, names) + f" (roles: {', '.join(names)})")
            )
    if spec.termination.stop_from and not spec.termination.stop_text:
        problems.append(located.problem(("termination", "stop_from"), "stop_from needs stop_text"))
    problems += _pattern_problems(spec, located)
    return problems


def _pattern_problems(spec: TeamSpec, located: Located) -> list[FileProblem]:
    names = spec.role_names
    problems = []
    if spec.pattern in ("selector", "fanout", "loop", "swarm", "consensus") and len(spec.roles) < 2:
        problems.append(located.problem(("roles",), f"the {spec.pattern} pattern needs at least two roles"))
    if spec.pattern == "fanout":
        if spec.fanout is None:
            problems.append(located.problem(("pattern",), "the fanout pattern needs `fanout: {join: ROLE}`"))
        elif spec.fanout.join not in names:
            problems.append(located.problem(("fanout", "join"), f"unknown role '{spec.fanout.join}'"
                                            + did_you_mean(spec.fanout.join, names)))
    if spec.pattern == "loop" and not ((spec.loop and spec.loop.until) or spec.termination.stop_text):
        problems.append(located.problem(("pattern",), "the loop pattern needs `loop: {until: TEXT}` or termination.stop_text"))
    problems += _consensus_problems(spec, located) + _hierarchy_problems(spec, located)
    for i, role in enumerate(spec.roles):
        problems += _role_problems(spec, located, i, role)
    return problems


def _role_problems(spec: TeamSpec, located: Located, i: int, role: RoleSpec) -> list[FileProblem]:
    """What a role asks of its team's pattern: triggers, handoffs, sub-teams."""
    names = spec.role_names
    problems = []
    for j, trigger in enumerate(role.on):
        if not _trigger_ok(trigger, names):
            problems.append(located.problem(("roles", i, "on", j), f"unknown trigger '{trigger}' (use "
                                            + ", ".join(f"'{t}'" for t in TRIGGERS) + " or 'ROLE finished')"))
    if role.on and spec.pattern in ("sequential", "fanout", "swarm", "consensus", "hierarchical"):
        problems.append(located.problem(("roles", i, "on"), f"event-driven roles work with round_robin, selector "
                                        f"and loop teams, not {spec.pattern}"))
    for j, target in enumerate(role.handoffs):
        if target != "user" and target not in names:
            problems.append(located.problem(("roles", i, "handoffs", j), f"unknown role '{target}'"
                                            + did_you_mean(target, names) + " (or `user`)"))
    if role.team is not None and spec.pattern != "hierarchical":
        problems.append(located.problem(("roles", i, "team"), "sub-teams need `pattern: hierarchical`"))
    if role.team is not None and (role.tools or role.validate_ or role.on or role.handoffs or role.model):
        problems.append(located.problem(("roles", i, "team"), "a sub-team role has no tools, validate, on, "
                                        "handoffs or model of its own: set them in the sub-team's file"))
    if role.handoffs and spec.pattern != "swarm":
        problems.append(located.problem(("roles", i, "handoffs"), "handoffs need `pattern: swarm`"))
    return problems


def _trigger_ok(trigger: str, names: list[str]) -> bool:
    if trigger in TRIGGERS:
        return True
    who, _, what = trigger.rpartition(" ")
    return what == "finished" and who in names


def _unknown_role(located: Located, loc: tuple[str | int, ...], who: str, names: list[str]) -> FileProblem:
    return located.problem(loc, f"unknown role '{who}'" + did_you_mean(who, names) + f" (roles: {', '.join(names)})")


def _consensus_problems(spec: TeamSpec, located: Located) -> list[FileProblem]:
    names = spec.role_names
    c = spec.consensus
    if spec.pattern != "consensus":
        return [located.problem(("consensus",), "consensus: needs `pattern: consensus`")] if c else []
    c = c or ConsensusSpec()
    problems = [located.problem(("roles", i, "name"), f"'{r.name}' is the name of a step of the consensus pattern; "
                                "rename the role") for i, r in enumerate(spec.roles) if r.name in ("ballot", "tally", "verdict")]
    problems += [_unknown_role(located, ("consensus", "voters", j), v, names) for j, v in enumerate(c.voters)
                if v not in names]
    if c.judge is not None and c.judge not in names:
        problems.append(_unknown_role(located, ("consensus", "judge"), c.judge, names))
    if c.tie == "judge" and c.judge is None:
        problems.append(located.problem(("consensus", "tie"), "tie: judge needs `judge: ROLE` (a role that does not vote)"))
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
        return [located.problem(("hierarchical",), "hierarchical: needs `pattern: hierarchical`")] if h else []
    if h is None:
        return [located.problem(("pattern",), "the hierarchical pattern needs `hierarchical: {manager: ROLE}`")]
    if h.manager not in spec.role_names:
        return [_unknown_role(located, ("hierarchical", "manager"), h.manager, spec.role_names)]
    if spec.role(h.manager).team is not None:
        return [located.problem(("hierarchical", "manager"), "the manager must be a role of its own, not a sub-team")]
    if len(spec.roles) < 2:
        return [located.problem(("roles",), "the hierarchical pattern needs a manager and at least one worker")]
    return []


def _tool_problems(spec: TeamSpec, located: Located, tool_names: list[str]) -> list[FileProblem]:
    named: list[tuple[tuple[str | int, ...], str]] = [
        (("roles", i, "tools", j), t) for i, role in enumerate(spec.roles) for j, t in enumerate(role.tools)
    ]
    named += [(("approvals", t), t) for t in spec.approvals]
    servers = [m.name for m in spec.mcp]
    problems = []
    for loc, t in named:
        server, dot, tool = t.partition(".")
        if dot and not (re.fullmatch(r"[A-Za-z0-9_-]+", tool) or tool == "*"):
            problems.append(located.problem(loc, f"'{t}' names no tool: write SERVER.TOOL or SERVER.* "
                                            "(e.g. files.write_file or files.*)"))
        elif dot and server not in servers:
            problems.append(located.problem(loc, f"unknown MCP server '{server}' in '{t}'" + did_you_mean(server, servers)
                                            + (f" (declared: {', '.join(servers)})" if servers else " (declare it under mcp:)")))
        elif not dot and t not in tool_names and t != "ask_human":  # ask_human is built in
            problems.append(located.problem(loc, f"unknown tool '{t}'" + did_you_mean(t, tool_names)
                                            + " (`parley tools` lists them)"))
    return problems


def _model_problem(parse, value: str, located: Located, loc: tuple) -> list[FileProblem]:  # type: ignore[no-untyped-def]
    from .errors import ModelStringError

    try:
        parse(value)
    except ModelStringError as exc:
        return [located.problem(loc, str(exc))]
    return []


def _looks_like_file(value: str) -> bool:
    return "\n" not in value and value.strip().endswith((".md", ".txt"))


def _prompt_candidates(value: str, team_dir: Path) -> list[Path]:
    """Where a prompt file may be: next to the team file or in the project, never outside both
    (a team file must not read any `.md` of the machine through `../` or an absolute path)."""
    rel = Path(value.strip())
    root = project_root()
    out = []
    for base in (team_dir, root, root / "prompts"):
        candidate = (base / rel).resolve()
        for allowed in (team_dir, root):
            try:
                inside(allowed, candidate)
            except ValueError:
                continue
            out.append(candidate)
            break
    return out


def _escaping_prompt(value: str, team_dir: Path) -> str | None:
    """Why a prompt path is refused (it leads outside the team file's folder and the project), or None."""
    if not _looks_like_file(value) or _prompt_candidates(value, team_dir):
        return None
    return (f"prompt file '{value.strip()}' is outside the team file's folder ({team_dir.resolve()}) and the project "
            f"({project_root()}): put the prompt next to the team file or under {project_root() / 'prompts'}")


def _resolve_prompt(value: str, team_dir: Path) -> str | None:
    if not _looks_like_file(value):
        return value.strip()
    for candidate in _prompt_candidates(value, team_dir):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8").strip()
    return None


def _missing_prompt(value: str, team_dir: Path) -> str:
    return f"prompt file '{value}' not found (looked next to the team file and under {project_root() / 'prompts'})"
