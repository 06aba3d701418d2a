"""Scripted team evaluations: `parley eval SUITE.yaml...`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._proc import freeze_startup_objects
from ..errors import ConfigError, FileProblem, TeamFileError
from ..store import Store, open_for_command
from ._baseline import Baseline, load_baseline, mark
from ._expect import Judge, Observed, Outcome, check, check_all
from ._findings_judge import ModelFailureJudge
from ._human import ScriptedHuman
from ._judge import LiveJudge
from ._junit import junit_xml, write_junit
from ._report import summarise, write_reports
from ._runner import Job, Runner, Variant, plan, variants
from ._simulated import ScenarioHuman, SimulatedHuman
from ._stats import annotate, group_stats, scenario_stats, wilson
from ._suite import Expectation, Scenario, Simulation, Suite, load_suite
from ._workers import Options, run_on_workers
from ._workers import handle as run_queued_scenario

__all__ = [
    "Expectation",
    "Job",
    "Judge",
    "Observed",
    "Outcome",
    "Runner",
    "Scenario",
    "ScenarioHuman",
    "ScriptedHuman",
    "SimulatedHuman",
    "Simulation",
    "Suite",
    "Variant",
    "check",
    "check_all",
    "evaluate",
    "group_stats",
    "junit_xml",
    "load_suite",
    "plan",
    "run_queued_scenario",
    "scenario_stats",
    "summarise",
    "variants",
    "wilson",
    "write_reports",
]

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_SUITE = 0, 1, 2


class Progress:
    """One line on stderr: a bar, scenarios done, passed, failed, tokens so far."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.total = total
        self.done = self.passed = self.failed = self.tokens = 0
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, record: dict[str, Any]) -> None:
        self.done += 1
        self.tokens += record["total_tokens"]
        if record["status"] != "interrupted":
            self.passed += record["passed"]
            self.failed += not record["passed"]
        width = 24
        filled = round(width * self.done / max(1, self.total))
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} done · {self.passed} passed · "
            f"{self.failed} failed · {self.tokens:,} tokens"
        )
        if self.live:
            self.stream.write("\r" + line)
            if self.done == self.total:
                self.stream.write("\n")
        else:
            verdict = "pass" if record["passed"] else ("ERROR" if record["status"] == "error" else "FAIL")
            self.stream.write(
                f"{line} · {record['scenario']} ({record['variant'] or record['team']}): {verdict}\n"
            )
        self.stream.flush()


def load_suites(paths: Sequence[str]) -> list[Suite]:
    problems: list[FileProblem] = []
    suites: list[Suite] = []
    for p in paths:
        try:
            suites.append(load_suite(p))
        except TeamFileError as exc:
            problems += exc.problems
    if problems:
        raise TeamFileError(problems)
    return suites


async def evaluate(
    paths: Sequence[str],
    *,
    team: str | None = None,
    model: str | None = None,
    compare: Sequence[str] = (),
    concurrency: int = 1,
    out: Path = Path("eval-out"),
    judge_model: str | None = None,
    save: bool = True,
    teams_dirs: Sequence[str] = (),
    timeout_s: float | None = None,
    workers: bool = False,
    repeat: int | None = None,
    junit: Path | None = None,
    baseline: Path | None = None,
) -> int:
    suites = load_suites(paths)
    if repeat is not None:
        suites = [_repeated(s, repeat) for s in suites]
    before = _inputs(junit, baseline)
    jobs = plan(suites, variants(compare, teams_dirs))
    store = await open_for_command() if save else None
    judge = LiveJudge(judge_model) if judge_model else None
    freeze_startup_objects()
    progress = Progress(len(jobs))
    runner = Runner(
        store=store,
        team=team,
        model=model,
        judge=judge,
        teams_dirs=teams_dirs,
        timeout_s=timeout_s,
        on_done=progress.update,
        failure_judge=ModelFailureJudge(judge.pool, judge.model) if judge is not None else None,
    )
    options = Options(team, model, list(teams_dirs), timeout_s, save, judge_model) if workers else None
    try:
        records = await _run_somewhere(runner, jobs, concurrency, options, progress.update)
    finally:
        if store is not None:
            await store.close()
        if judge is not None:
            await judge.close()
    records.sort(key=lambda r: r["job"])  # the suites' own order, whatever order they finished in
    title = "Evaluation: " + ", ".join(s.suite for s in suites)
    annotate(records)
    gone = mark(records, before) if before is not None else []
    files = write_reports(out, records, title=title)
    if junit is not None:
        files.append(write_junit(junit, records, title=title))
    _print_summary(records, judge)
    _print_stats(records, gone)
    print("wrote " + ", ".join(str(f) for f in files))
    return _exit_code(records, len(jobs), stopped=runner.stopping)


def _inputs(junit: Path | None, baseline: Path | None) -> Baseline | None:
    """The output and input files named on the command line, checked before anything runs."""
    if junit is not None and junit.is_dir():
        raise ConfigError(f"--junit {junit}: a folder; name the XML file to write")
    if junit is not None:  # a folder that cannot be made fails now, not after the runs
        junit.parent.mkdir(parents=True, exist_ok=True)
    return load_baseline(baseline) if baseline is not None else None


def _repeated(suite: Suite, times: int) -> Suite:
    """`--repeat K`: every scenario of the suite K times, whatever its `repeat:` says."""
    return suite.model_copy(
        update={"scenarios": [sc.model_copy(update={"repeat": times}) for sc in suite.scenarios]}
    )


def _print_stats(records: list[dict[str, Any]], gone: list[dict[str, Any]]) -> None:
    """Repeat statistics (when a scenario ran more than once), the baseline's marks, the simulated humans' use."""
    if any(s["k"] > 1 for s in scenario_stats(records)):
        for g in group_stats(records):
            k = "k" if g["k"] is None else g["k"]
            low, high = g["ci95"]
            print(
                f"{g['group']}: pass rate {g['pass_rate']:.0%} (95% CI {low:.0%}–{high:.0%}) · "
                f"pass^{k} {g['pass_hat_k']}/{g['scenarios']} · pass@{k} {g['pass_at_k']}/{g['scenarios']} · "
                f"flaky: {', '.join(g['flaky']) or 'none'}"
            )
    _print_baseline(records, gone)
    simulated = [r["simulated_human"] for r in records if r.get("simulated_human")]
    if simulated:
        tokens = sum(h["total_tokens"] for h in simulated)
        calls = sum(h["calls"] for h in simulated)
        said = sum(len(h["messages"]) for h in simulated)
        print(
            f"simulated humans: {calls} calls, {tokens:,} tokens, {said} messages (not in the teams' figures)"
        )


def _print_baseline(records: list[dict[str, Any]], gone: list[dict[str, Any]]) -> None:
    marks = {(r["suite"], r["scenario"], r["variant"]): r["baseline"] for r in records if r.get("baseline")}
    for (suite, name, variant), b in marks.items():
        if b["mark"] in ("regression", "improvement"):
            was, now = b["was"], b["now"]
            side = f" ({variant})" if variant else ""
            print(
                f"{b['mark']}: {suite} / {name}{side} passed {was[0]}/{was[1]} in the baseline, {now[0]}/{now[1]} now"
            )
    for g in gone:
        print(f"not run now: {g['suite']} / {g['scenario']} (in the baseline)")


def _exit_code(records: list[dict[str, Any]], planned: int, *, stopped: bool) -> int:
    """0 when every finished scenario run passed and nothing was stopped; 1 otherwise (said when stopped)."""
    finished = [r for r in records if r["status"] != "interrupted"]
    if stopped:
        print(f"stopped: {len(finished)} of {planned} scenario runs finished", file=sys.stderr)
    return EXIT_PASSED if finished and all(r["passed"] for r in finished) and not stopped else EXIT_FAILED


async def _run_somewhere(
    runner: Runner,
    jobs: Sequence[Job],
    concurrency: int,
    workers: Options | None,
    on_done: Callable[[dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """The scenario runs here, or on the cluster's workers when `workers` says how to make them there."""
    if workers is None:
        return await _run_stoppably(runner, jobs, concurrency)
    return await _on_workers(runner.store, jobs, workers, on_done)


async def _on_workers(
    store: Store | None, jobs: Sequence[Job], options: Options, on_done: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """The scenario runs on the cluster's workers (`--workers`): PARLEY_REDIS_URL and a PostgreSQL store."""
    from ..cluster import Node

    opened = store or await open_for_command()
    node = await Node.from_env(opened)
    if node is None:
        raise ConfigError(
            "--workers runs the scenarios on a cluster's `parley worker` processes: set PARLEY_REDIS_URL and "
            "PARLEY_DATABASE_URL as theirs (or leave --workers out to run them here)"
        )
    try:
        return await run_on_workers(node, jobs, options, on_done)
    finally:
        await node.close()
        if store is None:
            await opened.close()


async def _run_stoppably(runner: Runner, jobs: Sequence[Job], concurrency: int) -> list[dict[str, Any]]:
    """Run the jobs; Ctrl-C stops cleanly where signals can be handled (the main thread of a program; not in a
    worker thread)."""
    loop = asyncio.get_running_loop()
    handles_sigint = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, runner.stop)
        handles_sigint = True
    try:
        return await runner.run(jobs, concurrency)
    finally:
        if handles_sigint:
            loop.remove_signal_handler(signal.SIGINT)


def _print_summary(records: list[dict[str, Any]], judge: LiveJudge | None) -> None:
    for row in summarise(records):
        print(
            f"{row['group']}: {row['pass_rate']:.0%} passed ({row['passed']}/{row['runs']}) · "
            f"{row['mean_turns']:.1f} turns · {row['mean_tokens']:,.0f} tokens · {row['mean_latency_s']:.2f} s"
        )
    if judge is not None:
        print(judge.usage())
