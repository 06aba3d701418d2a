"""bench/parallel.py's smoke run: the parallel patterns really run their branches at once, and every variant
gets the same work done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import parallel


def test_parallel_smoke_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_BENCH_RESULTS", str(tmp_path))
    assert parallel.main(["--smoke"]) == 0
    data = json.loads((tmp_path / "parallel-smoke.json").read_text())
    assert data["smoke"] is True and data["machine"]["cores"]
    v = data["variants"]
    assert set(v) == set(parallel.VARIANTS)
    assert all(x["stop_reason"] == "completed" for x in v.values())
    branches = set(parallel.BRANCHES)
    # Every branch answered once, in parallel: each was streaming before any had finished.
    assert set(v["fanout"]["said"][:3]) == branches and v["fanout"]["said"][3:] == [parallel.JOIN]
    assert v["fanout"]["final_text"].startswith("Two of three branches approve")
    assert set(v["consensus"]["said"][:3]) == branches and v["consensus"]["said"][3:] == ["verdict"]
    assert v["consensus"]["final_text"].startswith("Decision: approve (by majority vote")
    assert v["fanout"]["overlapped"] and v["consensus"]["overlapped"]
    # The baselines: the slowest branch alone, and the same branches one after another, never at once.
    assert v["slowest"]["said"] == [max(data["delays_s"], key=data["delays_s"].get)]
    assert v["one_by_one"]["said"] == list(parallel.BRANCHES) and not v["one_by_one"]["overlapped"]
    for pattern in ("fanout", "consensus"):
        assert {"vs_slowest", "vs_one_by_one", "target_met"} <= set(v[pattern])
        assert len(v[pattern]["seconds"]) == data["repeats"]
