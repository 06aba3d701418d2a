"""Running suites: every scenario (times its repeats, times each compared team or model) as a real run."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalog import resolve_team
from ..conversation import Conversation
from ..errors import ConfigError, ParleyError
from ..events import Event, RunResult
from ..models import parse_model
from ..store import Store, run_owner
from ._expect import Judge, Observed, Outcome, check_all
from ._findings import detect
from ._findings_judge import FailureJudge, ask_judge
from ._simulated import ScenarioHuman
from ._suite import Scenario, Suite


@dataclass(frozen=True)
class Variant:
    """One side of a comparison: a team, a model, or neither (the suite as written)."""

    label: str
    team: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Job:
    index: int
    suite: Suite
    scenario: Scenario
    variant: Variant
    repeat: int


def variants(compare: Sequence[str], teams_dirs: Sequence[str] = ()) -> list[Variant]:
    """`--compare A,B`: each item is a team (name or file) or, failing that, a model string."""
    out: list[Variant] = []
    for item in compare:
        try:
            resolve_team(item, teams_dirs)
            out.append(Variant(label=item, team=item))
            continue
        except ConfigError:
            pass
        try:
            parse_model(item)
        except ConfigError:
            raise ConfigError(
                f"--compare {item!r} is neither a team (`parley teams`) nor a model string"
            ) from None
        out.append(Variant(label=item, model=item))
    return out or [Variant(label="")]


def plan(suites: Sequence[Suite], compare: Sequence[Variant]) -> list[Job]:
    jobs: list[Job] = []
    for suite in suites:
        for sc in suite.scenarios:
            for v in compare:
                for r in range(sc.repeat or suite.defaults.repeat):
                    jobs.append(Job(len(jobs), suite, sc, v, r + 1))
    return jobs


def grants_of(conv: Conversation) -> dict[str, list[str]]:
    """Each role's granted tools, hand-offs as `transfer_to_ROLE`, sub-teams' roles included (a sub-team role
    itself acts through its members)."""
    grants: dict[str, list[str]] = {}
    for role in conv.team.roles:
        if role.team is None:
            grants[role.name] = [*role.tools, *(f"transfer_to_{h}" for h in role.handoffs)]
    for sub in conv.subteams.values():
        grants.update(grants_of(sub))
    return grants


def _near(suite: Suite, ref: str) -> str:
    """A path in a suite file is relative to the current folder, or else to the suite file."""
    if suite.source is not None and not Path(ref).exists() and (suite.source.parent / ref).exists():
        return os.path.normpath(suite.source.parent / ref)
    return ref


def _model_near(suite: Suite, model: str) -> str:
    if model.startswith("scripted:"):
        return "scripted:" + _near(suite, model.removeprefix("scripted:"))
    return model


class Runner:
    def __init__(
        self,
        *,
        store: Store | None,
        team: str | None = None,
        model: str | None = None,
        judge: Judge | None = None,
        teams_dirs: Sequence[str] = (),
        timeout_s: float | None = None,
        on_done: Callable[[dict[str, Any]], None] = lambda record: None,
        failure_judge: FailureJudge | None = None,
    ) -> None:
        self.store = store
        self.failure_judge = failure_judge
        """Asked once per scenario run about the failure modes no rule sees (`--judge-model`)."""
        self.team = team
        self.model = model
        self.judge = judge
        self.timeout_s = timeout_s
        """Wall-clock limit per scenario run, unless the scenario sets its own (the team's otherwise)."""
        self.teams_dirs = list(teams_dirs)
        self.on_done = on_done
        self._runs: set[Any] = set()
        self.stopping = False

    def stop(self) -> None:
        """Ctrl-C: start nothing new and stop what runs; finished scenarios are kept."""
        self.stopping = True
        for run in list(self._runs):
            run.stop()

    async def run(self, jobs: Sequence[Job], concurrency: int = 1) -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(job: Job) -> dict[str, Any] | None:
            async with gate:
                if self.stopping:
                    return None
                record = await self.run_job(job)
                self.on_done(record)
                return record

        results = await asyncio.gather(*(one(j) for j in jobs))
        return [r for r in results if r is not None]

    def _choose(self, job: Job) -> tuple[str, str | None]:
        """The team and the model the suite asks for (None: the team's own models, as Conversation decides)."""
        sc, suite, v = job.scenario, job.suite, job.variant
        team = v.team or self.team or sc.team or suite.defaults.team
        assert team is not None  # the suite loader requires one
        team = _near(suite, team)
        model = (
            v.model
            or self.model
            or sc.models.get(Path(team).stem)
            or sc.models.get(team)
            or sc.model
            or suite.defaults.model
        )
        return team, _model_near(suite, model) if model else None

    def _blank(self, job: Job, team: str, model: str) -> dict[str, Any]:
        """A job's record before (or without) its run: an error until the run says otherwise."""
        return {
            "job": job.index,
            "suite": job.suite.suite,
            "scenario": job.scenario.name,
            "variant": job.variant.label,
            "repeat": job.repeat,
            "team": team,
            "model": model,
            "pattern": None,
            "run_id": None,
            "status": "error",
            "passed": False,
            "expectations": [],
            "stop_reason": None,
            "detail": "",
            "turns": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cost_usd": None,
            "latency_s": 0.0,
            "final": "",
            "human": [],
            "simulated_human": None,
            "usage_per_speaker": [],
            "findings": [],
            "findings_note": None,
            "error": None,
        }

    async def run_job(self, job: Job) -> dict[str, Any]:
        sc = job.scenario
        team, model = self._choose(job)
        record = self._blank(job, team, model or "")
        try:
            conv = Conversation(
                team,
                model=model,
                max_turns=sc.max_turns,
                teams_dirs=self.teams_dirs,
                timeout_s=sc.timeout_s or self.timeout_s,
            )
        except ParleyError as exc:
            record["error"] = str(exc)
            return record
        record["team"], record["pattern"], record["model"] = conv.team.name, conv.team.pattern, conv.model
        grants = grants_of(conv)
        # Data its tools change (the sample database) starts fresh in a folder of the run's own: runs and repeats
        # are independent trials, whatever ran before them.
        data = tempfile.TemporaryDirectory(prefix="parley-eval-data-")
        conv.tool_data = Path(data.name)
        try:
            if self.store is not None:
                title = f"eval {job.suite.suite} / {sc.name}"[:120]
                record["run_id"] = await conv.save_to(self.store, run_owner(), title)
            events, result, latency, human = await self._drive(conv, sc)
        finally:
            await conv.close()  # its models, and its MCP sessions (a stdio server's process ends)
            data.cleanup()
        seen = Observed(events=events, result=result, latency_s=latency)
        outcomes = await check_all(sc.expect, seen, sc.task, self.judge)
        outcomes += human.outcomes()  # requests the scripted human had no answer for; the simulated one's
        record.update(self._finished(seen, outcomes, human))
        if record["status"] != "interrupted":
            record.update(await self._findings(seen, sc.task, grants, record["expectations"]))
        return record

    async def _findings(
        self, seen: Observed, task: str, grants: dict[str, list[str]], outcomes: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The failure modes the rules find in the run, and those the judge model reports (when there is one)."""
        found = detect(seen.events, grants=grants, outcomes=outcomes)
        note = None
        if self.failure_judge is not None:
            judged, note = await ask_judge(
                self.failure_judge, seen.events, task, list(grants), seen.result.turns
            )
            found = sorted([*found, *judged], key=lambda f: f.turn)
        return {"findings": [f.as_dict() for f in found], "findings_note": note}

    def _finished(self, seen: Observed, outcomes: list[Outcome], human: ScenarioHuman) -> dict[str, Any]:
        """What a finished run adds to its record: status, verdict, figures, what the human did, the transcript."""
        result = seen.result
        interrupted = result.stop_reason == "stopped" and self.stopping
        return {
            "status": "interrupted"
            if interrupted
            else ("error" if result.stop_reason == "error" else "done"),
            "passed": not interrupted and all(o.outcome != "failed" for o in outcomes),
            "expectations": [o.as_dict() for o in outcomes],
            "stop_reason": result.stop_reason,
            "detail": result.detail,
            "turns": result.turns,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
            "cost_usd": result.cost_usd,
            "latency_s": round(seen.latency_s, 3),
            "final": result.content,
            "human": human.log,
            **human.record(),  # the simulated human: its messages, calls and tokens, apart from the team's
            "usage_per_speaker": [
                {"speaker": who, "prompt_tokens": p, "completion_tokens": c, "turns": t}
                for who, p, c, t in seen.projection.per_speaker()
            ],
            "transcript": [
                {"turn": m.turn, "source": m.source, "content": m.content[:2000]} for m in seen.messages
            ],
            **({"error": result.detail} if result.stop_reason == "error" else {}),
        }

    async def _drive(
        self, conv: Conversation, sc: Scenario
    ) -> tuple[list[Event], RunResult, float, ScenarioHuman]:
        human = ScenarioHuman(sc)
        started = time.perf_counter()
        run = conv.start(sc.task)
        self._runs.add(run)
        human.start(run)
        events: list[Event] = []
        try:
            async for ev in run:
                events.append(ev)
                await human.observe(run, ev)
        finally:
            self._runs.discard(run)
            await human.close()
        result = events[-1]
        assert isinstance(result, RunResult)
        return events, result, time.perf_counter() - started, human
