"""Evaluation suites: the documented YAML format, validated with line-numbered errors before anything runs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from .._yaml import Located, load_located, pydantic_problems
from ..errors import ConfigError, FileProblem, TeamFileError
from ..events import StopReason
from ..paths import inside, project_root, roots

__all__ = ["Expectation", "HumanStep", "Scenario", "Suite", "load_suite"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- the scripted human ----------------------------------------------------------------


class SayStep(_Strict):
    """After agent turn `at_turn` (0: right after the task), a human message joins the conversation."""

    at_turn: Annotated[int, Field(ge=0)]
    say: str | None = None
    interrupt: str | None = None
    """Instead of `say`: cut the turn in progress short with this message."""

    @model_validator(mode="after")
    def _one(self) -> SayStep:
        if (self.say is None) == (self.interrupt is None):
            raise ValueError("give `say: TEXT` or `interrupt: TEXT` with at_turn")
        return self


class ApprovalStep(_Strict):
    """How to answer approval requests for a tool (`any` for every tool)."""

    approval: str
    decision: Literal["approve", "deny"]
    reason: str = ""


class EscalationStep(_Strict):
    """How to settle escalations of a kind (`any`, `validation`, `tie`, `disagreement`)."""

    escalation: Literal["any", "validation", "tie", "disagreement"]
    choose: Annotated[int, Field(ge=1)] | None = None
    say: str | None = None
    """Write this answer instead of picking a position."""
    continue_: bool = Field(default=False, alias="continue")
    """Let the team continue."""

    @model_validator(mode="after")
    def _one(self) -> EscalationStep:
        if sum((self.choose is not None, self.say is not None, self.continue_)) != 1:
            raise ValueError("settle an escalation with exactly one of: choose: N, say: TEXT, continue: true")
        return self


class QuestionStep(_Strict):
    """Answers to the roles' questions (ask_human): `any`, or text the question must contain."""

    question: str
    answer: str


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("at_turn", "approval", "escalation", "question"):
            if key in value:
                return key
    return None


HumanStep = Annotated[
    Annotated[SayStep, Tag("at_turn")]
    | Annotated[ApprovalStep, Tag("approval")]
    | Annotated[EscalationStep, Tag("escalation")]
    | Annotated[QuestionStep, Tag("question")],
    Discriminator(
        _step_kind,
        custom_error_type="human_step",
        custom_error_message="a human step starts with at_turn:, approval:, escalation: or question:",
    ),
]


# -- expectations ----------------------------------------------------------------------


class ToolCalled(_Strict):
    name: str
    args_contain: dict[str, Any] = Field(default_factory=dict)
    """Arguments the call must have (values compared as text, so 1042 matches "1042")."""


class Expectation(_Strict):
    """One check on a finished run. Write exactly one key per item."""

    final_contains: str | None = None
    final_matches: str | None = None
    spoke: list[str] | None = None
    not_spoke: list[str] | None = None
    speaker_order: list[str] | None = None
    tool_called: ToolCalled | str | None = None
    tool_not_called: str | None = None
    escalated: bool | None = None
    stop_reason: StopReason | None = None
    max_turns: Annotated[int, Field(ge=0)] | None = None
    max_total_tokens: Annotated[int, Field(ge=0)] | None = None
    max_cost_usd: Annotated[float, Field(ge=0)] | None = None
    max_latency_s: Annotated[float, Field(gt=0)] | None = None
    file_written: str | None = None
    """A file the team wrote in its workspace (a glob such as `decks/*.pptx`)."""
    vote_decision: str | None = None
    """Consensus teams: what the vote decided."""
    delegated_to: list[str] | None = None
    """Hierarchical teams: workers that got at least one sub-task."""
    judge: str | None = None
    """A question for a judge model (`--judge-model`); skipped, never passed, without one."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Expectation:
        set_ = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(
                "write one expectation per item (e.g. `- final_contains: refund`), "
                f"not {len(set_)}: {', '.join(set_) or 'none'}"
            )
        if self.final_matches is not None:
            try:
                re.compile(self.final_matches)
            except re.error as exc:
                raise ValueError(f"final_matches {self.final_matches!r} does not compile: {exc}") from None
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def value(self) -> Any:
        v = getattr(self, self.kind)
        return v.model_dump() if isinstance(v, BaseModel) else v


# -- scenarios and suites ----------------------------------------------------------------


class Defaults(_Strict):
    model: str | None = None
    repeat: Annotated[int, Field(ge=1, le=100)] = 1
    team: str | None = None


class Scenario(_Strict):
    name: str
    team: str | None = None
    """A team name or a path (relative to the suite file); `defaults.team` otherwise."""
    task: str
    model: str | None = None
    models: dict[str, str] = Field(default_factory=dict)
    """Per team, the model to use when the suite runs against several teams (`--compare`): scripted
    replies name a team's roles, so each team needs its own script."""
    human: list[HumanStep] = Field(default_factory=list[HumanStep])
    expect: list[Expectation] = Field(default_factory=list[Expectation])
    repeat: Annotated[int, Field(ge=1, le=100)] | None = None
    max_turns: Annotated[int, Field(ge=1)] | None = None
    """Override the team's turn limit for this scenario."""
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    """Override the team's wall-clock limit for this scenario."""


class Suite(_Strict):
    suite: str
    description: str = ""
    defaults: Defaults = Field(default_factory=Defaults)
    scenarios: Annotated[list[Scenario], Field(min_length=1)]
    source: Path | None = Field(default=None, exclude=True)


_KEYS = sorted(
    {
        *Suite.model_fields,
        *Defaults.model_fields,
        *Scenario.model_fields,
        *Expectation.model_fields,
        *SayStep.model_fields,
        *ApprovalStep.model_fields,
        *EscalationStep.model_fields,
        "continue",
        *QuestionStep.model_fields,
        *ToolCalled.model_fields,
    }
    - {"continue_", "source"}
)


def load_suite(path: Path | str) -> Suite:
    """Load and check a suite file. Raises TeamFileError listing every problem with its line."""
    path = Path(path)
    located = load_located(path, str(path))
    data: object = located.data
    if not isinstance(data, dict):
        raise TeamFileError([located.problem((), "a suite must be a mapping (suite:, scenarios: ...)")])
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise TeamFileError(pydantic_problems(located, exc, _KEYS)) from None
    problems = _cross_check(suite, located)
    if problems:
        raise TeamFileError(problems)
    return suite.model_copy(update={"source": path})


def _cross_check(suite: Suite, located: Located) -> list[FileProblem]:
    from ..models import parse_model

    problems: list[FileProblem] = []
    seen: set[str] = set()
    for i, sc in enumerate(suite.scenarios):
        if sc.name in seen:
            problems.append(located.problem(("scenarios", i, "name"), f"duplicate scenario name '{sc.name}'"))
        seen.add(sc.name)
        if sc.team is None and suite.defaults.team is None:
            problems.append(
                located.problem(
                    ("scenarios", i),
                    f"scenario '{sc.name}' names no team (give `team:` here or under defaults)",
                )
            )
        pairs = [(("scenarios", i, "model"), sc.model), (("defaults", "model"), suite.defaults.model)]
        pairs += [(("scenarios", i, "models", team), m) for team, m in sc.models.items()]
        for where, model in pairs:
            if model is not None:
                try:
                    parse_model(model)
                except ConfigError as exc:
                    problems.append(located.problem(where, str(exc)))
                if model.startswith("scripted:"):
                    problems += _outside(located, where, model.removeprefix("scripted:"))
        if sc.team is not None:
            problems += _outside(located, ("scenarios", i, "team"), sc.team)
    if suite.defaults.team is not None:
        problems += _outside(located, ("defaults", "team"), suite.defaults.team)
    return problems


def _outside(located: Located, where: tuple[str | int, ...], ref: str) -> list[FileProblem]:
    """A file a suite names (a team, a script) must be in the suite's folder or the project: a suite is
    code the operator runs, and must not reach any file of the machine through `../` or an absolute path."""
    if not ref.endswith((".yaml", ".yml")) and "/" not in ref and os.sep not in ref:
        return []  # a team's name, found among the teams
    suite_dir = Path(located.file).parent
    path = Path(ref).expanduser()
    # as the runner finds it (_near)
    target = path if path.exists() or path.is_absolute() else suite_dir / path
    for root in (suite_dir, *roots()):
        try:
            inside(root, target.resolve())
            return []
        except ValueError:
            continue
    return [
        located.problem(
            where,
            f"'{ref}' is outside the suite's folder ({suite_dir.resolve()}) and the project "
            f"({project_root()}): keep the files a suite names next to it or in the project",
        )
    ]
