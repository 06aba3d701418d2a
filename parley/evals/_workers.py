"""`parley eval --workers`: the scenario runs of an evaluation spread over a cluster's `parley worker` processes.

Each scenario run is a job on the cluster's queue; a worker runs it exactly as a local run does (the same Runner,
on the same suite file: workers run from the same project folder, with the same files) and sends back its record. The
records come back in any order; the reports are written from them as from a local run's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..cluster import Job as QueuedJob
from ..cluster import Node
from ..errors import ConfigError
from ..store import run_owner
from ._findings_judge import ModelFailureJudge
from ._judge import LiveJudge
from ._runner import Job, Runner, Variant
from ._suite import load_suite

__all__ = ["Options", "run_on_workers", "run_task"]

RECORD = "eval_record"
"""The type of the bus entries that carry a finished scenario run's record back."""


@dataclass(frozen=True)
class Options:
    """How each scenario run is made, as on the command line (the same on every worker)."""

    team: str | None = None
    model: str | None = None
    teams_dirs: list[str] = field(default_factory=list[str])
    timeout_s: float | None = None
    save: bool = True
    judge_model: str | None = None
    """`--judge-model`: each worker asks it, with a pool and meter of its own, as a local run does."""


def _task(job: Job, options: Options) -> dict[str, Any]:
    if job.suite.source is None:
        raise ConfigError(f"suite {job.suite.suite!r} has no file: workers read the suite from its file")
    return {
        "suite": str(job.suite.source),  # as given: workers run from the same project folder
        "scenario": job.suite.scenarios.index(job.scenario),
        "variant": asdict(job.variant),
        "repeat": job.repeat,
        "index": job.index,
        "options": asdict(options),
    }


async def run_task(node: Node, task: dict[str, Any]) -> dict[str, Any]:
    """A worker's side: run one scenario as `parley eval` would, and return its record."""
    suite = load_suite(task["suite"])
    job = Job(
        int(task["index"]),
        suite,
        suite.scenarios[int(task["scenario"])],
        Variant(**task["variant"]),
        int(task["repeat"]),
    )
    options = Options(**task["options"])
    judge = LiveJudge(options.judge_model) if options.judge_model else None
    runner = Runner(
        store=node.store if options.save else None,
        team=options.team,
        model=options.model,
        judge=judge,
        teams_dirs=options.teams_dirs,
        timeout_s=options.timeout_s,
        failure_judge=ModelFailureJudge(judge.pool, judge.model) if judge is not None else None,
    )
    try:
        return await runner.run_job(job)
    finally:
        if judge is not None:
            await judge.close()


async def handle(node: Node, queued: QueuedJob) -> None:
    """Run a queued scenario and send its record back on the evaluation's stream (a failure is a record too)."""
    task = json.loads(queued.text)
    try:
        record = await run_task(node, task)
    except Exception as exc:  # a suite the worker cannot read, a bug: the evaluation still hears back
        record = {
            "job": task.get("index"),
            "status": "error",
            "passed": False,
            "error": f"{type(exc).__name__}: {exc}",
        }
    record["worker"] = node.name  # which process ran it (a local run's record has none)
    await node.bus.publish(queued.thread_id, {"type": RECORD, "record": record}, int(task["index"]))


async def run_on_workers(
    node: Node,
    jobs: Sequence[Job],
    options: Options,
    on_done: Callable[[dict[str, Any]], None] = lambda record: None,
) -> list[dict[str, Any]]:
    """Queue every scenario run for the workers, and collect each record as it comes back."""
    if not jobs:
        return []
    batch = uuid.uuid4().hex
    start = await node.bus.last_id(batch)
    for job in jobs:
        text = json.dumps(_task(job, options))
        await node.bus.submit(QueuedJob(thread_id=batch, text=text, actor=run_owner(), mode="eval"))
    records: dict[int, dict[str, Any]] = {}
    async for _, payload, index in node.bus.follow(batch, start):
        if payload.get("type") != RECORD or index is None or index in records:
            continue
        records[index] = payload["record"]
        on_done(records[index])
        if len(records) == len(jobs):
            break
    return [records[i] for i in sorted(records)]
