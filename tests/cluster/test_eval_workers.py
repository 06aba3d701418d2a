"""`parley eval --workers`: a suite's scenario runs spread over two `parley worker` processes give the records a
run here gives."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from cluster.conftest import PARLEY, ROOT, Workers

VOLATILE = {"latency_s", "run_id", "transcript", "usage_per_speaker", "worker"}
"""What differs between two runs of the same scenario anywhere: timings, ids, and what holds them."""


def _records(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in lines]


def _eval(env: dict[str, str], out: Path, *more: str) -> subprocess.CompletedProcess[str]:
    suites = ["evals/support.yaml", "evals/patterns.yaml"]
    return subprocess.run(
        [PARLEY, "eval", *suites, "--no-save", "--out", str(out), *more],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def test_an_evaluation_on_workers_gives_the_records_a_local_one_gives(
    workers: Workers, cluster_env: dict[str, str], tmp_path: Path
) -> None:
    # The shipped tools keep their sample data in the data folder: each side starts from a fresh one.
    cluster_env["PARLEY_DATA_DIR"] = str(tmp_path / "workers-data")
    workers()
    workers()
    # The judge model is asked on the workers as here (its answer, unreadable on purpose, becomes each run's note).
    judge = tmp_path / "judge.yaml"
    judge.write_text("roles:\n  failure_judge: [fine, fine, fine]\n", encoding="utf-8")
    spread = _eval(cluster_env, tmp_path / "spread", "--workers", "--judge-model", f"scripted:{judge}")
    here = _eval(
        cluster_env | {"PARLEY_DATA_DIR": str(tmp_path / "local-data")},
        tmp_path / "here",
        "--judge-model",
        f"scripted:{judge}",
    )
    assert spread.returncode == here.returncode, spread.stderr
    local, remote = _records(tmp_path / "here"), _records(tmp_path / "spread")
    assert len(local) == 3 and remote == local
    assert {r["findings_note"] for r in remote} == {"the judge's answer was not JSON: 'fine'"}
    assert (tmp_path / "spread" / "report.html").is_file()
    # Each scenario run was a worker's, none the evaluating process's own.
    lines = (tmp_path / "spread" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert all(json.loads(line).get("worker") for line in lines)
    assert not any("worker" in json.loads(line) for line in (tmp_path / "here" / "results.jsonl").open())


def test_workers_needs_a_cluster_and_says_so(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PARLEY_DATA_DIR": str(tmp_path / "data")}
    proc = _eval(env, tmp_path / "out", "--workers")
    assert proc.returncode == 2
    assert "--workers runs the scenarios on a cluster's `parley worker` processes: set PARLEY_REDIS_URL" in (
        proc.stderr
    )
