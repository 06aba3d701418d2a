"""bench/streaming.py's smoke run: both ways hold the same conversations, and pieces are really streamed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import streaming
from parley.engine.autogen import direct


def test_streaming_smoke_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_BENCH_RESULTS", str(tmp_path))
    assert streaming.main(["--smoke"]) == 0
    data = json.loads((tmp_path / "streaming-smoke.json").read_text())
    assert data["smoke"] is True and data["same_messages"] is True
    for side in ("through_runtime", "direct"):
        assert data[side]["messages"] == [8 * data["conversations"]]
        assert data[side]["pieces"][0] > data[side]["messages"][0]  # each reply came in several pieces
        assert data[side]["median_cpu_ms_per_message"] > 0
    assert data["ratio"] > 0 and direct.ENABLED  # the benchmark leaves the engine as it found it
