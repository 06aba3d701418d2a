"""Evaluation suites: the documented YAML format, validated with line-numbered errors before anything runs."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from .._yaml import Loc, Located, load_located, pydantic_problems
from ..errors import ConfigError, FileProblem, TeamFileError
from ..events import StopReason
from ..paths import inside, project_root, roots

__all__ = ["Expectation", "HumanStep", "Scenario", "Simulation", "Suite", "load_suite"]


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


class Simulation(_Strict):
    """A simulated human: a model playing a person with a goal. It answers the roles' questions, approvals and
    escalations that no scripted step answers, and steps in when the conversation drifts from its goal."""

    goal: Annotated[str, Field(min_length=1, max_length=4000)]
    """What the person wants from the team, in their words."""
    persona: Annotated[str, Field(max_length=4000)] = ""
    """Who they are and how they write (terse, impatient, unsure of the details...)."""
    knows: dict[Annotated[str, Field(min_length=1, max_length=200)], str] = Field(default_factory=dict)
    """Facts the person can give when asked (an order number, a budget): text, numbers or true/false."""
    model: Annotated[str, Field(min_length=1)]
    """The model playing the person (any model string; `scripted:FILE.yaml` with replies for `human`)."""
    max_messages: Annotated[int, Field(ge=0, le=50)] = 3
    """At most this many messages of its own (interjections when the conversation drifts)."""

    @field_validator("knows", mode="before")
    @classmethod
    def _facts(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic says it is not a mapping
        facts: dict[str, str] = {}
        for key, fact in cast(dict[Any, Any], value).items():
            if isinstance(fact, dict | list) or fact is None:
                raise ValueError(f"knows.{key}: a fact is text, a number or true/false")
            facts[str(key)] = str(fact).lower() if isinstance(fact, bool) else str(fact)
        if sum(len(str(k)) + len(v) for k, v in facts.items()) > 20_000:
            raise ValueError("knows: at most 20,000 characters of facts")
        return facts


class SimulateStep(_Strict):
    """`- simulate: {goal: ..., model: ...}`: a simulated human beside the scripted steps (which win)."""

    simulate: Simulation


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("at_turn", "approval", "escalation", "question", "simulate"):
            if key in value:
                return key
    return None


HumanStep = Annotated[
    Annotated[SayStep, Tag("at_turn")]
    | Annotated[ApprovalStep, Tag("approval")]
    | Annotated[EscalationStep, Tag("escalation")]
    | Annotated[QuestionStep, Tag("question")]
    | Annotated[SimulateStep, Tag("simulate")],
    Discriminator(
        _step_kind,
        custom_error_type="human_step",
        custom_error_message="a human step starts with at_turn:, approval:, escalation: or question:"
        " (or simulate:)",
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
    """The scripted steps, and at most one `simulate:` (also written alone as `human: {simulate: ...}`)."""
    expect: list[Expectation] = Field(default_factory=list[Expectation])
    repeat: Annotated[int, Field(ge=1, le=100)] | None = None
    max_turns: Annotated[int, Field(ge=1)] | None = None
    """Override the team's turn limit for this scenario."""
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    """Override the team's wall-clock limit for this scenario."""

    @field_validator("human", mode="before")
    @classmethod
    def _one_simulation_alone(cls, value: Any) -> Any:
        """`human: {simulate: ...}` is `human: [{simulate: ...}]`."""
        if isinstance(value, dict) and "simulate" in cast(dict[str, Any], value):
            return [cast(dict[str, Any], value)]
        return cast(object, value)

    @property
    def simulation(self) -> Simulation | None:
        return next((s.simulate for s in self.human if isinstance(s, SimulateStep)), None)


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
        *SimulateStep.model_fields,
        *Simulation.model_fields,
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
        raise TeamFileError(
            pydantic_problems(_InSuite(data, located.file, located.lines), exc, _KEYS)
        ) from None
    problems = _cross_check(suite, located)
    if problems:
        raise TeamFileError(problems)
    return suite.model_copy(
        update={"source": path, "scenarios": [_near_suite(sc, path) for sc in suite.scenarios]}
    )


def _near_suite(sc: Scenario, path: Path) -> Scenario:
    """A simulated human's script, as the runner finds a team's: from the current folder, else the suite's."""
    sim = sc.simulation
    if sim is None or not sim.model.startswith("scripted:"):
        return sc
    ref = sim.model.removeprefix("scripted:")
    if Path(ref).exists() or not (path.parent / ref).exists():
        return sc
    moved = sim.model_copy(update={"model": "scripted:" + os.path.normpath(path.parent / ref)})
    steps = [SimulateStep(simulate=moved) if isinstance(s, SimulateStep) else s for s in sc.human]
    return sc.model_copy(update={"human": steps})


_STEP_TAGS = ("at_turn", "approval", "escalation", "question", "simulate")


class _InSuite(Located):
    """A suite's problems as its author wrote it: a human step's path without the step kind pydantic adds,
    `human: {simulate: ...}` without the list it stands for, and a simulated human's problems naming their
    scenario."""

    def problem(self, loc: Loc, message: str) -> FileProblem:
        loc = tuple(loc)
        if len(loc) < 4 or loc[0] != "scenarios" or loc[2] != "human" or not isinstance(loc[1], int):
            return super().problem(loc, message)
        at: int = loc[1]
        if len(loc) > 4 and loc[4] in _STEP_TAGS:
            loc = loc[:4] + loc[5:]
        scenario = _raw_scenario(self, at)
        steps, index = scenario.get("human"), loc[3]
        alone = isinstance(steps, dict)
        if alone:
            loc = loc[:3] + loc[4:]
        if alone or "simulate" in loc or _simulates(steps, index):
            message = f"scenario '{scenario.get('name', at)}', simulated human: {message}"
        return super().problem(loc, message)


def _simulates(steps: object, index: str | int) -> bool:
    if not isinstance(steps, list) or not isinstance(index, int):
        return False
    items = cast(list[object], steps)
    return (
        index < len(items)
        and isinstance(items[index], dict)
        and "simulate" in cast(dict[str, Any], items[index])
    )


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
        problems += _check_simulation(sc, i, located)
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


def _check_simulation(sc: Scenario, i: int, located: Located) -> list[FileProblem]:
    """At most one simulated human a scenario, on a model that parses, its script (if scripted) near the suite."""
    from ..models import parse_model

    at = [j for j, step in enumerate(sc.human) if isinstance(step, SimulateStep)]
    if not at:
        return []
    alone = isinstance(_raw_scenario(located, i).get("human"), dict)
    where: tuple[str | int, ...] = ("scenarios", i, "human") if alone else ("scenarios", i, "human", at[0])
    named = f"scenario '{sc.name}', simulated human: "
    problems = [
        located.problem(("scenarios", i, "human", j), named + "give one simulate: per scenario")
        for j in at[1:]
    ]
    sim = sc.simulation
    assert sim is not None
    model = sim.model
    try:
        parse_model(model)
    except ConfigError as exc:
        return [*problems, located.problem((*where, "simulate", "model"), named + str(exc))]
    if model.startswith("scripted:"):
        outside = _outside(located, (*where, "simulate", "model"), model.removeprefix("scripted:"))
        problems += [replace(p, message=named + p.message) for p in outside]
        if not outside:
            ref = model.removeprefix("scripted:")
            problems += _script_problems(located, (*where, "simulate", "model"), ref, named)
    return problems


def _script_problems(
    located: Located, where: tuple[str | int, ...], ref: str, named: str
) -> list[FileProblem]:
    """A simulated human's script is read now: a missing or broken one is the suite's error, not a run's."""
    from ..models import ScriptedModel

    path = Path(ref)
    if not path.exists():
        path = Path(located.file).parent / ref
    if not path.is_file():
        return [located.problem(where, named + f"no script '{ref}' (next to the suite, or from this folder)")]
    try:
        ScriptedModel.load(path)
    except TeamFileError as exc:
        return [replace(p, message=named + p.message) for p in exc.problems]
    return []


def _raw_scenario(located: Located, i: int) -> dict[str, Any]:
    data = cast(object, located.data)
    scenarios = cast(dict[str, Any], data).get("scenarios") if isinstance(data, dict) else None
    if not isinstance(scenarios, list):
        return {}
    items = cast(list[object], scenarios)
    found = items[i] if i < len(items) else None
    return cast(dict[str, Any], found) if isinstance(found, dict) else {}
