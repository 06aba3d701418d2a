"""bench/overhead.py's smoke run: bare AutoGen and parley hold the same conversation, and parley stores all of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import overhead


def test_overhead_smoke_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_BENCH_RESULTS", str(tmp_path))
    assert overhead.main(["--smoke"]) == 0
    data = json.loads((tmp_path / "overhead-smoke.json").read_text())
    assert data["smoke"] is True and data["machine"]["cores"]
    assert {"ratio", "target_ratio", "target_met", "same_conversation", "messages"} <= set(data)
    variants = data["variants"]
    assert set(variants) == set(overhead.VARIANTS)
    # The same replies, in the same order, from the same roles, in every variant.
    assert data["same_conversation"] is True
    assert {v["messages"] for v in variants.values()} == {data["messages"]}
    assert len({v["final_text"] for v in variants.values()}) == 1
    assert variants["bare"]["final_text"].startswith(f"writer on turn {data['messages']}:")
    # The store holds every event the run showed (streamed chunks aside), and only with a store attached.
    assert variants["parley"]["stored_events"] == variants["parley"]["shown_events"] > data["messages"]
    assert variants["parley_no_store"]["stored_events"] == 0
    for v in variants.values():
        assert len(v["seconds"]) == data["repeats"] and v["median_s"] > 0
