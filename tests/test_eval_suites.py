"""The shipped evaluation suites (`evals/*.yaml`) pass, cover every shipped team, and the comparison and
failing examples report what they should."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from parley.cli import main
from parley.evals import load_suite, plan, variants

ROOT = Path(__file__).resolve().parent.parent
EVALS = ROOT / "evals"
SUITES = sorted(EVALS.glob("*.yaml"))
FAILING = EVALS / "examples" / "failing-example.yaml"
COMPARE = ("content-pipeline", "content-studio")


def _eval(*args: str) -> int:
    return main(["eval", *args, "--no-save"])


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def _why(records: list[dict[str, Any]]) -> str:
    """What failed, for the assertion message."""
    return "\n".join(
        f"{r['scenario']}: {r['error'] or ''} "
        + "; ".join(f"{e['kind']}: {e['message']}" for e in r["expectations"] if e["outcome"] == "failed")
        for r in records
        if not r["passed"]
    )


@pytest.mark.parametrize("suite", SUITES, ids=[p.stem for p in SUITES])
def test_shipped_suite_passes(suite: Path, tmp_path: Path) -> None:
    code = _eval(str(suite), "--out", str(tmp_path))
    records = _records(tmp_path)
    assert code == 0, _why(records)
    runs = plan([load_suite(suite)], variants([]))
    assert sorted(r["scenario"] for r in records) == sorted(job.scenario.name for job in runs)
    assert all(r["passed"] is True and r["status"] == "done" for r in records), _why(records)
    assert "## Failures" not in (tmp_path / "summary.md").read_text(encoding="utf-8")


def test_every_shipped_team_has_a_scenario() -> None:
    covered = set()
    for path in SUITES:
        suite = load_suite(path)
        covered |= {Path(sc.team or suite.defaults.team or "").stem for sc in suite.scenarios}
    teams = {p.stem for p in (ROOT / "teams").glob("*.yaml")}
    assert teams - covered == set(), f"teams without a scenario in evals/*.yaml: {sorted(teams - covered)}"


def test_patterns_suite_compares_two_teams_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _eval(str(EVALS / "patterns.yaml"), "--compare", ",".join(COMPARE), "--out", str(tmp_path))
    records = _records(tmp_path)
    assert code == 0, _why(records)
    scenarios = [sc.name for sc in load_suite(EVALS / "patterns.yaml").scenarios]
    assert sorted((r["scenario"], r["variant"]) for r in records) == sorted(
        (sc, team) for sc in scenarios for team in COMPARE
    )
    # Each side ran its own team with its own script (`models:`), and the two patterns behave differently.
    assert {(r["variant"], r["team"], r["pattern"]) for r in records} == {
        ("content-pipeline", "content-pipeline", "sequential"),
        ("content-studio", "content-studio", "round_robin"),
    }
    scripts = {"content-pipeline": "scripts/patterns-pipeline-", "content-studio": "scripts/patterns-studio-"}
    assert all(scripts[r["variant"]] in r["model"] for r in records)
    assert {r["stop_reason"] for r in records if r["variant"] == "content-studio"} == {"stop_text"}
    assert {r["stop_reason"] for r in records if r["variant"] == "content-pipeline"} == {"completed"}
    out = capsys.readouterr().out
    for team in COMPARE:
        assert f"{team}: 100% passed (2/2)" in out
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| content-pipeline | 100% (2/2) |" in summary and "| content-studio | 100% (2/2) |" in summary
    assert (tmp_path / "report.html").read_text(encoding="utf-8").count("<img ") == 3


def test_failing_example_fails_and_says_why(tmp_path: Path) -> None:
    assert _eval(str(FAILING), "--out", str(tmp_path)) == 1
    records = _records(tmp_path)
    assert len(records) == len(load_suite(FAILING).scenarios)
    assert not any(r["passed"] for r in records)
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    failures = summary.split("## Failures", 1)[1]
    for line in (
        '**reply-misses-the-refund** (customer-support (selector), run 1): `final_contains: "refund"` — '
        "the final answer does not contain 'refund'",
        '`tool_called: "issue_refund"` — issue_refund was never called',
        "— no call to lookup_order had arguments {'order_id': 1024}",
        "  - [2] billing called lookup_order {'order_id': 1042}",
        "`max_turns: 2` — the run took 3 turns",
        '**approval-nobody-answers** (customer-support (selector), run 1): `scripted_human: ["approval of issue_refund (turn 2)"]` — '
        "the scripted human had no answer for: approval of issue_refund",
        "**script-runs-out** (content-studio (round_robin), run 1): error: ScriptExhaustedError: ",
        '`stop_reason: "stop_text"` — the run stopped with error',
    ):
        assert line in failures, f"summary.md lacks {line!r}:\n{failures}"
    # The expectations that hold are not reported as failures.
    assert "spoke" not in failures and "could not refund" not in failures
