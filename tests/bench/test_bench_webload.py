"""`python -m bench.webload --smoke`: a few conversations through the real web chat, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, results: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`python -m bench.webload --smoke ARGS` as a user runs it; what it printed, and the JSON it wrote. The
    benchmark imports the web tests' helpers (tests/ui, tests/security) by their own module names, which this pytest
    session has already loaded as conftest plugins: hence a process of its own."""
    monkeypatch.setenv("PARLEY_BENCH_RESULTS", str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "bench.webload", "--smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, json.loads((tmp_path / results).read_text(encoding="utf-8"))


def test_smoke_run_delivers_every_agent_message_of_every_conversation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done, data = run_bench(tmp_path, monkeypatch, "webload-smoke.json")

    assert {"machine", "settings", "code", "levels", "web_path", "degrades_at", "targets"} <= data.keys()
    assert data["smoke"] is True
    for level in data["levels"]:
        n = level["conversations"]
        assert level["finished"] == n
        assert (
            level["messages_received"] == level["messages_expected"] == n * data["settings"]["load_messages"]
        )
        assert level["error_count"] == 0, level["errors"]
        assert {"p50", "p95", "max"} <= level["latency_ms"].keys()
        assert level["rss_peak_mb"] > 0
    web = data["web_path"]
    assert web["messages"] == data["settings"]["long_messages"]
    assert len(web["web_s"]) == len(web["engine_s"]) == data["settings"]["repeats"]
    assert "ms_per_message" in web
    assert "web chat under load" in done.stdout.lower()


def test_cluster_smoke_run_delivers_every_message_through_replicas_and_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--cluster`: the same conversations through 2 web replicas and 2 workers on PostgreSQL and Redis, beside
    one process; every message of every conversation arrives, and the cluster's figures count all its processes."""
    from bench._cluster import PG_ENV, REDIS_ENV, services

    try:
        services()
    except SystemExit as exc:
        pytest.skip(f"{exc} (or set {PG_ENV} and {REDIS_ENV})")
    done, data = run_bench(tmp_path, monkeypatch, "webload-cluster-smoke.json", "--cluster")

    assert data["cluster"]["replicas"] == 2 and data["cluster"]["workers"] == 2
    single, cluster = data["levels"], data["cluster"]["levels"]
    assert (
        [r["conversations"] for r in single]
        == [r["conversations"] for r in cluster]
        == data["settings"]["levels"]
    )
    for level in [*single, *cluster]:
        n = level["conversations"]
        assert level["finished"] == n, level["error_samples"]
        assert level["messages_received"] == n * data["settings"]["load_messages"]
        assert level["error_count"] == 0, level["errors"]
    # Four server processes, each a Python interpreter with parley loaded: their memory is counted together.
    assert cluster[0]["rss_before_mb"] > 2 * single[0]["rss_before_mb"]
    assert {"p95_met", "cpu_met", "cpu_ms_per_message"} <= data["targets"].keys()
    assert "2 web replicas and 2 workers" in done.stdout
    for level in cluster:  # the CPU split between the web replicas and the workers adds up to the whole
        split = level["server_cpu_ms_per_message_by_kind"]
        assert split.keys() == {"web", "worker"} and min(split.values()) > 0
        assert sum(split.values()) == pytest.approx(level["server_cpu_ms_per_message"], abs=0.05)
    assert "CPU ms per message at" in done.stdout and "workers" in done.stdout
    # Each level ran level_repeats times on each side; its row is the run of median CPU, every run beside it.
    repeats = 2
    for level in [*single, *cluster]:
        assert len(level["runs"]) == repeats and not any(run["error_count"] for run in level["runs"])
        assert level["server_cpu_ms_per_message"] == min(
            run["server_cpu_ms_per_message"] for run in level["runs"]
        )
    assert data["targets"]["p95_at_first_level_ms"] == pytest.approx(
        sum(run["p95_ms"] for run in cluster[0]["runs"]) / repeats
    )
    assert f"Each level was run {repeats} times" in done.stdout
    # The code when issue 18 was filed, one process at the same load, from this checkout's history: the cluster's
    # CPU per message is also given as a ratio to it (a shallow clone lacks the commit and says so).
    from bench._baseline import BASELINE_COMMIT

    base = data["baseline"]
    have = subprocess.run(["git", "cat-file", "-e", f"{BASELINE_COMMIT}^{{commit}}"], cwd=ROOT, check=False)
    if have.returncode != 0:
        assert "not in this checkout" in base["skipped"] and data["targets"]["cpu_vs_baseline"] is None
        return
    assert base["commit"] == BASELINE_COMMIT
    assert [r["conversations"] for r in base["levels"]] == data["settings"]["levels"]
    for level in base["levels"]:
        assert level["finished"] == level["conversations"] and level["error_count"] == 0, level["errors"]
        assert len(level["runs"]) == repeats
    (n,) = data["settings"]["levels"]
    ratio = data["targets"]["cpu_vs_baseline"][str(n)]
    assert ratio["ratio"] == pytest.approx(
        cluster[0]["server_cpu_ms_per_message"] / base["levels"][0]["server_cpu_ms_per_message"], abs=0.001
    )
    assert "one process of the code when issue 18 was filed" in done.stdout
    assert "/ the baseline's at the same load" in done.stdout
