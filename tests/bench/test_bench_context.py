"""bench/context.py's smoke run: the three ways are counted the same way, and parley's view stays bounded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import context


def test_context_growth_smoke_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_BENCH_RESULTS", str(tmp_path))
    data = context.run(smoke=True)
    saved = json.loads((tmp_path / "context-smoke.json").read_text())
    assert saved["checks"] == data["checks"] and saved["machine"]["cores"]
    figures = data["figures"]
    top = str(data["sizes"][-1])
    # The same conversation, the same number of agent calls, whichever way the context is kept.
    assert {figures[m][top]["calls"] for m in figures} == {data["sizes"][-1]}
    # parley keeps the task in every call; AutoGen's buffered context loses it once the buffer is full.
    assert data["checks"]["task_in_every_call"] is True
    assert figures["autogen buffered"][top]["calls_with_task"] < figures["autogen buffered"][top]["calls"]
    # Fewer prompt tokens than the naive chat, selector included; the summary's tokens are counted apart.
    assert data["checks"]["vs_naive_with_selector"] < 1
    assert figures["parley + summary"][top]["summariser"] > 0


def test_every_reply_is_exactly_80_tokens() -> None:
    from parley.models import encoding

    assert {len(encoding().encode(context.reply(who, i))) for who in context.ROLES for i in range(5)} == {80}
