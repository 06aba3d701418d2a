"""Evaluations for CI and for models that are not deterministic: `--repeat K` statistics (Wilson intervals,
pass^k, pass@k, flakiness), `--junit FILE` validated against the JUnit XML schema, and `--baseline` marks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree  # pyright: ignore[reportAttributeAccessIssue] - lxml ships no type stubs

from parley.cli import main
from parley.errors import ConfigError
from parley.evals import group_stats, junit_xml, scenario_stats, wilson
from parley.evals._baseline import load_baseline, mark
from parley.evals._report import markdown, page

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = etree.XMLSchema(etree.parse(str(ROOT / "tests" / "data" / "junit-10.xsd")))
SUPPORT = ROOT / "evals" / "support.yaml"
FAILING = ROOT / "evals" / "examples" / "failing-example.yaml"


def _run(scenario: str, repeat: int, passed: bool, **extra: Any) -> dict[str, Any]:
    """A scenario run's record as the runner writes it (the fields the reports read)."""
    failed = (
        []
        if passed
        else [
            {
                "kind": "final_contains",
                "value": "refund",
                "outcome": "failed",
                "message": "the final answer does not contain 'refund'",
                "evidence": ["final answer: 'Sorry \x1b[31m\x00 no'"],  # control characters from a model
            }
        ]
    )
    return {
        "job": 0, "suite": "s", "scenario": scenario, "variant": "", "repeat": repeat, "team": "t",
        "pattern": "selector", "model": "m", "run_id": None, "status": "done", "passed": passed,
        "expectations": failed, "stop_reason": "stop_text", "detail": "", "turns": 3, "prompt_tokens": 10,
        "completion_tokens": 5, "total_tokens": 15, "cost_usd": None, "latency_s": 0.5, "final": "",
        "human": [], "simulated_human": None, "usage_per_speaker": [], "error": None, "transcript": [],
        "findings": [], "findings_note": None, **extra,
    }  # fmt: skip


def _records(outcomes: dict[str, list[bool]]) -> list[dict[str, Any]]:
    return [_run(name, i + 1, p) for name, ps in outcomes.items() for i, p in enumerate(ps)]


def test_wilson_intervals_are_sound_for_few_runs_and_extreme_rates() -> None:
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(3, 3) == pytest.approx((0.4385, 1.0), abs=1e-4)  # all passed: not the point [1, 1]
    assert wilson(0, 3) == pytest.approx((0.0, 0.5615), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_pass_hat_k_pass_at_k_and_flakiness_per_scenario_and_side() -> None:
    records = _records({"steady": [True, True, True], "flaky": [True, False, True], "broken": [False] * 3})
    records.append(_run("steady", 4, False, status="interrupted"))  # not counted
    stats = {s["scenario"]: s for s in scenario_stats(records)}
    assert (stats["steady"]["k"], stats["steady"]["pass_hat_k"], stats["steady"]["pass_at_k"]) == (
        3,
        True,
        True,
    )
    assert (stats["flaky"]["pass_hat_k"], stats["flaky"]["pass_at_k"], stats["flaky"]["flaky"]) == (
        False,
        True,
        True,
    )
    assert stats["flaky"]["flakiness"] == pytest.approx(2 / 3, abs=1e-3)
    assert (stats["broken"]["pass_at_k"], stats["broken"]["flaky"], stats["broken"]["flakiness"]) == (
        False,
        False,
        0,
    )
    [side] = group_stats(records)
    assert (side["runs"], side["passed"], side["k"]) == (9, 5, 3)
    assert (side["pass_hat_k"], side["pass_at_k"], side["flaky"]) == (1, 2, ["flaky"])
    assert side["ci95"] == pytest.approx([0.2667, 0.8112], abs=1e-3)
    summary = markdown(records, title="t")
    assert "## Repeat statistics" in summary
    assert "| t (selector) | 56% (27%–81%, 5/9 runs) | 1/3 scenarios pass^3 | 2/3 pass@3 | flaky |" in summary
    assert "| s / flaky | t (selector) | 2/3 | 67% (21%–94%) | no | yes | 0.67 (flaky) |" in summary
    html = page(records, title="t")
    assert "<h2>Repeat statistics</h2>" in html and "0.67 flaky" in html
    # one run per scenario: no repeat statistics to speak of
    assert "Repeat statistics" not in markdown(_records({"a": [True], "b": [False]}), title="t")


def test_junit_xml_is_valid_against_the_schema_with_one_case_per_run() -> None:
    records = _records({"refund": [True, False]})
    records.append(_run("broke", 1, False, status="error", error="the model failed: 500"))
    records.append(_run("cut", 1, False, status="interrupted"))
    document = etree.fromstring(junit_xml(records, title="Evaluation: s"))
    SCHEMA.assertValid(document)
    suite = document.find("testsuite")
    assert suite is not None
    assert {k: suite.get(k) for k in ("name", "tests", "failures", "errors", "skipped")} == {
        "name": "s",
        "tests": "4",
        "failures": "2",
        "errors": "1",
        "skipped": "1",
    }
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["refund (run 1)", "refund (run 2)", "broke (run 1)", "cut (run 1)"]
    assert cases["refund (run 1)"].find("failure") is None
    failure = cases["refund (run 2)"].find("failure")
    assert failure is not None and failure.get("message") == "failed: final_contains"
    assert "the final answer does not contain 'refund'" in (failure.text or "")
    assert "\ufffd[31m\ufffd no" in (failure.text or "")  # what XML cannot carry, replaced
    error = cases["broke (run 1)"].find("error")
    assert error is not None and error.get("message") == "the model failed: 500"
    assert cases["cut (run 1)"].find("skipped") is not None


def test_the_cli_writes_junit_for_a_failing_suite_and_repeats_scenarios(tmp_path: Path) -> None:
    junit = tmp_path / "ci" / "junit.xml"
    code = main(["eval", str(FAILING), "--no-save", "--out", str(tmp_path / "out"), "--junit", str(junit)])
    assert code == 1
    document = etree.parse(str(junit))
    SCHEMA.assertValid(document)
    failures = document.getroot().findall(".//failure")
    assert failures and all(f.get("type") == "expectations" for f in failures)
    assert any("tool_called" in (f.get("message") or "") for f in failures)

    code = main(["eval", str(SUPPORT), "--no-save", "--out", str(tmp_path / "rep"), "--repeat", "2"])
    assert code == 0
    lines = (tmp_path / "rep" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["repeat"] for r in records] == [1, 2]
    # Each run starts from the same sample data: the refund run 1 wrote is not in the lookup of run 2.
    assert records[0]["prompt_tokens"] == records[1]["prompt_tokens"] > 0
    assert records[0]["transcript"] == records[1]["transcript"]
    assert records[0]["repeat_stats"]["k"] == 2 and records[0]["repeat_stats"]["pass_hat_k"] is True
    assert "## Repeat statistics" in (tmp_path / "rep" / "summary.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("bad", ["0", "101", "two"])
def test_repeat_is_a_count_from_1_to_100(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["eval", str(SUPPORT), "--repeat", bad])
    assert exit_.value.code == 2 and "--repeat" in capsys.readouterr().err


def test_a_baseline_marks_regressions_improvements_and_new_scenarios(tmp_path: Path) -> None:
    old = tmp_path / "old.jsonl"
    before = _records({"kept": [True, True], "broke": [True, True], "fixed": [False, False], "gone": [True]})
    old.write_text("".join(json.dumps(r) + "\n" for r in before), encoding="utf-8")
    now = _records({"kept": [True, True], "broke": [True, False], "fixed": [True, True], "added": [True]})
    gone = mark(now, load_baseline(old))
    marks = {r["scenario"]: r["baseline"]["mark"] for r in now}
    assert marks == {"kept": "unchanged", "broke": "regression", "fixed": "improvement", "added": "new"}
    assert [g["scenario"] for g in gone] == ["gone"]
    assert now[2]["baseline"] == {"mark": "regression", "was": [2, 2], "now": [1, 2]}
    summary = markdown(now, title="t")
    assert "regression: 1 · improvement: 1 · unchanged: 1 · new: 1" in summary
    assert "| s / broke | t (selector) | 2/2 (100%) | 1/2 (50%) | REGRESSION |" in summary
    html = page(now, title="t")
    assert "<h2>Against the baseline</h2>" in html and "▼ regression" in html and "▲ improvement" in html


def test_a_baseline_that_is_not_an_evaluations_results_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "results.jsonl"
    bad.write_text(
        json.dumps(_run("a", 1, True)) + "\n" + '{"suite": "s", "passed": "yes"}\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"results.jsonl:2: not a scenario run's record"):
        load_baseline(bad)
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"deep.jsonl:1:"):
        load_baseline(tmp_path / "deep.jsonl")
    with pytest.raises(ConfigError, match="no such file"):
        load_baseline(tmp_path / "missing.jsonl")
    # before anything runs: exit 2 and the reason
    assert (
        main(["eval", str(SUPPORT), "--no-save", "--baseline", str(bad), "--out", str(tmp_path / "o")]) == 2
    )
    assert "results.jsonl:2: not a scenario run's record" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert (
        main(["eval", str(SUPPORT), "--no-save", "--junit", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    )
    assert "a folder; name the XML file to write" in capsys.readouterr().err


def test_the_cli_marks_a_regression_against_a_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(SUPPORT), "--no-save", "--out", str(tmp_path / "old")]) == 0
    old = tmp_path / "old" / "results.jsonl"
    record = json.loads(old.read_text(encoding="utf-8"))
    record["passed"] = False  # as if it had failed before
    old.write_text(json.dumps(record) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert (
        main(["eval", str(SUPPORT), "--no-save", "--out", str(tmp_path / "new"), "--baseline", str(old)]) == 0
    )
    assert "improvement: support-regressions / refund-needs-approval passed 0/1" in capsys.readouterr().out
    [now] = [json.loads(line) for line in (tmp_path / "new" / "results.jsonl").read_text().splitlines()]
    assert now["baseline"] == {"mark": "improvement", "was": [0, 1], "now": [1, 1]}
