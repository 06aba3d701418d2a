"""Acceptance: every shipped evaluation suite passes with each scenario's script served over HTTP to the
real client (PARLEY_SCRIPTED_VIA: autogen-ext's OpenAI or Anthropic client, tool calls streamed,
reflection on tool use), and agrees scenario by scenario with the in-process scripted run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from parley.cli import main
from parley.engine.autogen.models.replay import replay_server

ROOT = Path(__file__).resolve().parent.parent.parent
SUITES = sorted((ROOT / "evals").glob("*.yaml"))
FAILING = ROOT / "evals" / "examples" / "failing-example.yaml"


def _run(suite: Path, out: Path, monkeypatch: pytest.MonkeyPatch, via: str) -> dict[str, dict[str, Any]]:
    monkeypatch.setenv("PARLEY_SCRIPTED_VIA", via)
    main(["eval", str(suite), "--out", str(out), "--no-save"])
    records = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    return {f"{r['scenario']}/{r['variant']}/{r['repeat']}": r for r in records}


def _conversation(r: dict[str, Any]) -> list[tuple[str, str]]:
    """Who said what, as a sorted list: a parallel step's answers arrive in any order over HTTP (as from real
    models). Numbers masked and the sample database's refund history left out: both runs share that database,
    so the second sees the first's refunds."""
    said = []
    for t in r["transcript"]:
        text = re.sub(r"\d+", "#", t["content"])
        kept = [line for line in text.splitlines() if not line.startswith(("Refund #:", "No refunds."))]
        said.append((t["source"], "\n".join(kept)))
    return sorted(said)


def _outcome(r: dict[str, Any]) -> dict[str, Any]:
    """What must agree between the two paths (token counts differ: reflection is one more call per tool step)."""
    return {
        "passed": r["passed"],
        "status": r["status"],
        "error": r["error"],
        "stop_reason": r["stop_reason"],
        "detail": r["detail"],
        "turns": r["turns"],
        "final": re.sub(r"\d+", "#", r["final"] or ""),
        "human": r["human"],
        "conversation": _conversation(r),
        "expectations": [(e["kind"], e["outcome"]) for e in r["expectations"]],
    }


def _failures(r: dict[str, Any]) -> str:
    return f"{r['error'] or ''} " + "; ".join(
        f"{e['kind']}: {e['message']}" for e in r["expectations"] if e["outcome"] == "failed"
    )


@pytest.mark.parametrize("via", ["openai"])
@pytest.mark.parametrize("suite", SUITES, ids=[p.stem for p in SUITES])
def test_shipped_suite_passes_over_http_as_it_does_scripted(
    suite: Path, via: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = replay_server().served.copy()
    direct = _run(suite, tmp_path / "direct", monkeypatch, "direct")
    assert replay_server().served == before, "the direct run must not use the replay server"
    replayed = _run(suite, tmp_path / via, monkeypatch, via)
    served = replay_server().served - before
    assert sorted(replayed) == sorted(direct)
    assert all(r["passed"] for r in direct.values()), {
        k: _failures(r) for k, r in direct.items() if not r["passed"]
    }
    # The production path really ran: requests through the SDK, streamed, with tool calls and reflections.
    assert served[via] > 0 and served["streamed"] > 0
    if any(e["kind"] == "tool_called" for r in replayed.values() for e in r["expectations"]):
        assert served["tool_calls"] > 0 and served["reflections"] > 0, served
    if any(r["pattern"] == "selector" for r in replayed.values()):
        assert served["json_schema"] > 0, "the selector's picks go out bound to a JSON schema, as on OpenAI"
    differ = {
        key: _failures(replayed[key]) or f"{_outcome(replayed[key])} != {_outcome(direct[key])}"
        for key in direct
        if _outcome(replayed[key]) != _outcome(direct[key])
    }
    assert differ == {}, f"the HTTP replay disagrees with the scripted run: {differ}"


def test_the_failing_example_fails_over_http_exactly_as_it_does_scripted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong answers, a missing approval, a script that runs out (its own error, not the SDK's 400)."""
    direct = _run(FAILING, tmp_path / "direct", monkeypatch, "direct")
    replayed = _run(FAILING, tmp_path / "openai", monkeypatch, "openai")
    assert not any(r["passed"] for r in direct.values())
    assert {k: _outcome(r) for k, r in replayed.items()} == {k: _outcome(r) for k, r in direct.items()}
    summary = (tmp_path / "openai" / "summary.md").read_text(encoding="utf-8")
    assert "error: ScriptExhaustedError: " in summary


def test_a_team_with_tools_runs_through_anthropic_s_messages_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """customer-support: the selector, a lookup, a refund under approval, every call Anthropic-shaped."""
    suite = ROOT / "evals" / "support.yaml"
    before = replay_server().served.copy()
    direct = _run(suite, tmp_path / "direct", monkeypatch, "direct")
    replayed = _run(suite, tmp_path / "anthropic", monkeypatch, "anthropic")
    served = replay_server().served - before
    assert served["anthropic"] > 0 and served["openai"] == 0
    assert served["tool_calls"] > 0 and served["reflections"] > 0 and served["streamed"] > 0
    assert {k: _outcome(r) for k, r in replayed.items()} == {k: _outcome(r) for k, r in direct.items()}
    assert all(r["passed"] for r in replayed.values()), {k: _failures(r) for k, r in replayed.items()}
