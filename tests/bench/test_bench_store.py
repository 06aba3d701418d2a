"""bench/store.py's smoke run: each way writes every row of a recorded run, and the database holds them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bench import store as bench_store


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One smoke run for the module's tests (it measures SQLite and, when reachable, PostgreSQL)."""
    results = tmp_path_factory.mktemp("bench-results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PARLEY_BENCH_RESULTS", str(results))
        mp.setenv("PARLEY_DATA_DIR", str(tmp_path_factory.mktemp("parley-data")))
        assert bench_store.main(["--smoke"]) == 0
    saved = json.loads((results / "store-smoke.json").read_text())
    yield saved


def _check(data: dict[str, Any], result: dict[str, Any]) -> None:
    written = data["writes"]
    assert set(result["ways"]) == set(bench_store.WAYS)
    for way in result["ways"].values():
        # What each way claims it wrote is what the database holds for its thread, read back.
        assert way["rows_held"] == {
            "events": written["event"],
            "audit": written["audit"],
            "checkpoints": written["checkpoint"],
        }
        assert way["events_per_s"] > 0 and len(way["seconds"]) == data["repeats"]
    assert result["ratio"] > 0


def test_the_recorded_run_writes_like_a_run(smoke: dict[str, Any]) -> None:
    assert smoke["smoke"] is True and smoke["machine"]["cores"]
    written = smoke["writes"]
    # At most one checkpoint per agent message (the writer keeps the newest of a batch), the events
    # (message and usage of each turn), the task's audit row.
    assert 1 <= written["checkpoint"] <= smoke["messages"]
    assert written["event"] > 2 * smoke["messages"] and written["audit"] >= 1


def test_sqlite_holds_every_row_each_way_wrote(smoke: dict[str, Any]) -> None:
    _check(smoke, smoke["sqlite"])


def test_postgresql_holds_every_row_each_way_wrote(smoke: dict[str, Any]) -> None:
    result = smoke["postgresql"]
    if "skipped" in result:
        pytest.skip(result["skipped"])
    _check(smoke, result)
