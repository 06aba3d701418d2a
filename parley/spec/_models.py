"""The team file's fields: one pydantic model per section, each field documented where it is declared."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_MAX_REPLY_TOKENS",
    "DEFAULT_WINDOW",
    "PATTERNS",
    "SECTIONS",
    "TRIGGERS",
    "ConsensusSpec",
    "ContextSpec",
    "FanoutSpec",
    "HierarchicalSpec",
    "HumanSpec",
    "LoopSpec",
    "McpServerSpec",
    "RoleSpec",
    "TeamSpec",
    "TerminationSpec",
    "ValidationSpec",
]

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
        for key, value in cast(dict[str, Any], schema).items():
            if key in _REF_KEYS and isinstance(value, str) and not value.startswith("#"):
                found.append((f"{where}.{key}", value))
            found += _outside_refs(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(cast(list[Any], schema)):
            found += _outside_refs(value, f"{where}[{i}]")
    return found


def _uses(schema: Any, keyword: str) -> bool:
    """Whether a keyword appears anywhere in a schema."""
    if isinstance(schema, dict):
        mapping = cast(dict[str, Any], schema)
        return keyword in mapping or any(_uses(v, keyword) for v in mapping.values())
    return isinstance(schema, list) and any(_uses(v, keyword) for v in cast(list[Any], schema))


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
            from jsonschema.exceptions import SchemaError
            from jsonschema.validators import validator_for

            try:
                validator_for(v).check_schema(v)
            except SchemaError as exc:
                raise ValueError(f"json_schema is not a valid JSON schema: {exc.message}") from None
            if _uses(v, "unevaluatedProperties") and _uses(v, "patternProperties"):
                raise ValueError(
                    "json_schema combines unevaluatedProperties with patternProperties, whose patterns "
                    "parley cannot give a time limit there: use additionalProperties instead"
                )
            outside = _outside_refs(v)
            if outside:
                where, ref = outside[0]
                raise ValueError(
                    f"json_schema refers outside itself ({where}: {ref!r}): parley never fetches "
                    "http(s):// or file:// schemas; copy the definition into the schema under $defs "
                    "and refer to it as '#/$defs/NAME'"
                )
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
    default_answer: str = (
        "No answer from the human in time: go on with your best assumption and say what it is."
    )


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
    pattern: Literal[
        "round_robin", "selector", "sequential", "fanout", "loop", "swarm", "hierarchical", "consensus"
    ]
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
    mcp: list[McpServerSpec] = Field(default_factory=list[McpServerSpec])
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


SECTIONS: tuple[type[BaseModel], ...] = (
    TeamSpec,
    RoleSpec,
    TerminationSpec,
    McpServerSpec,
    FanoutSpec,
    LoopSpec,
    ValidationSpec,
    ConsensusSpec,
    HumanSpec,
    ContextSpec,
    HierarchicalSpec,
)
"""Every model of the team file, for "did you mean" suggestions on an unknown key."""
