"""Failure-mode findings through `parley eval`: in results.jsonl, counted per team and pattern in summary.md and
report.html with each finding's turn and evidence; the judge model (scripted here) for the modes no rule sees, its
answers read defensively."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from parley.cli import main
from parley.evals import Runner, load_suite, plan, variants
from parley.evals._findings_judge import JUDGED, ask_judge, parse_answer, prompt
from parley.events import MessageEvent, RunResult

ROOT = Path(__file__).resolve().parent.parent
TASK = "Draft a product announcement for our new refund self-service page"

BAD_SCRIPT = """\
roles:
  researcher:
    - "Facts: refunds within 30 days, and a photo for damaged items."
    - "Facts: refunds within 30 days, and a photo for damaged items."
  writer:
    - tool: kb_search
      args: {query: "refund headline"}
  editor:
    - "Writer: add a photo rule."
"""

JUDGE_SCRIPT = """\
roles:
  failure_judge:
    - json:
        findings:
          - {mode: task derailment, turn: 2, role: writer, evidence: "searched instead of writing"}
          - {mode: made up, turn: 1, role: x, evidence: y}
    - "I think the team did fine."
"""


def _suite(tmp_path: Path) -> Path:
    (tmp_path / "bad.yaml").write_text(BAD_SCRIPT, encoding="utf-8")
    good = ROOT / "evals" / "scripts" / "studio-refund-post.yaml"
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"""\
suite: findings-demo
defaults: {{team: content-studio}}
scenarios:
  - name: runs-to-the-cap
    task: "{TASK}"
    model: scripted:bad.yaml
    max_turns: 4
    human:
      - at_turn: 1
        say: "Mention order 1042 in the title."
    expect:
      - stop_reason: stop_text
  - name: clean
    task: "{TASK}"
    model: scripted:{good}
    human:
      - at_turn: 1
        say: "Keep it short and write it for first-time buyers."
    expect:
      - stop_reason: stop_text
""",
        encoding="utf-8",
    )
    return suite


def _records(out: Path) -> dict[str, dict[str, Any]]:
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["scenario"]: r for r in map(json.loads, lines)}


EXPECTED = [
    ("ignored other agent's input", 2, "writer"),
    ("disobey role specification", 2, "writer"),  # kb_search, not granted to the writer
    ("disobey role specification", 3, "editor"),  # "Writer: ..."
    ("step repetition", 4, "researcher"),
    ("unaware of termination conditions", 4, "researcher"),
]


def test_a_failing_run_s_findings_reach_every_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["eval", str(_suite(tmp_path)), "--no-save", "--out", str(out)]) == 1
    records = _records(out)
    found = records["runs-to-the-cap"]["findings"]
    assert sorted((f["mode"], f["turn"], f["role"]) for f in found) == sorted(EXPECTED)
    assert all(f["by"] == "rule" and f["evidence"] for f in found)
    assert records["clean"]["findings"] == [] and records["clean"]["findings_note"] is None

    summary = (out / "summary.md").read_text(encoding="utf-8")
    section = summary.split("## Failure-mode findings", 1)[1]
    assert "| content-studio (round_robin) | 1/2 | 5 | 4 | 1 | 0 |" in section
    assert (
        "- **runs-to-the-cap** (content-studio (round_robin), run 1), turn 2, writer: *disobey role specification* "
        "(specification) — called kb_search" in section
    )
    assert "turn 4, researcher: *unaware of termination conditions*" in section
    assert "'Mention order 1042 in the title.' (after turn 1) is reflected nowhere" in section

    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Failure-mode findings</h2>" in page
    assert (
        "<td>runs-to-the-cap</td><td>content-studio (round_robin)</td><td>1</td><td>4</td><td>researcher</td>"
        in page
    )
    assert (
        "step repetition" in page
        and "writer wrote in editor" not in page
        and "editor wrote in writer" in page
    )


def test_a_shipped_suite_reports_no_finding(tmp_path: Path) -> None:
    assert main(["eval", str(ROOT / "evals" / "support.yaml"), "--no-save", "--out", str(tmp_path)]) == 0
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| customer-support (selector) | 0/1 | 0 | 0 | 0 | 0 | - |" in summary
    assert "No failure mode found in any run." in summary
    assert "No failure mode found in any run." in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_the_judge_model_adds_findings_and_an_unreadable_answer_is_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    judge = tmp_path / "judge.yaml"
    judge.write_text(JUDGE_SCRIPT, encoding="utf-8")
    out = tmp_path / "out"
    code = main(
        ["eval", str(_suite(tmp_path)), "--no-save", "--out", str(out), "--judge-model", f"scripted:{judge}"]
    )
    assert code == 1
    records = _records(out)
    judged = [f for f in records["runs-to-the-cap"]["findings"] if f["by"] == "judge"]
    assert judged == [
        {
            "mode": "task derailment",
            "turn": 2,
            "role": "writer",
            "evidence": "searched instead of writing",
            "by": "judge",
            "group": "inter-agent misalignment",
        }
    ]
    assert (
        records["runs-to-the-cap"]["findings_note"]
        == "the judge's answer had an unknown mode 'made up' (left out)"
    )
    assert records["clean"]["findings"] == []
    assert (
        records["clean"]["findings_note"] == "the judge's answer was not JSON: 'I think the team did fine.'"
    )
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "*task derailment* (inter-agent misalignment) (judge) — searched instead of writing" in summary
    assert (
        "- note on **clean** (content-studio (round_robin), run 1): the judge's answer was not JSON"
        in summary
    )
    assert "judge (scripted:" in capsys.readouterr().out  # its calls metered apart from the teams'


def test_a_judge_that_fails_is_a_note_never_a_crash() -> None:
    async def broken(system: str, user: str) -> str:
        raise ConnectionError("no route to the judge")

    events = [MessageEvent(source="writer", turn=1, content="Draft")]
    found, note = asyncio.run(ask_judge(broken, events, TASK, ["writer"], 1))
    assert found == [] and note == "the judge model failed: ConnectionError: no route to the judge"


@pytest.mark.parametrize(
    ("answer", "modes", "note"),
    [
        ('{"findings": []}', [], None),
        (
            'Here it is:\n```json\n{"findings": [{"mode": "Task_Derailment", "turn": 99, "role": "w", '
            '"evidence": "off topic"}]}\n```',
            [("task derailment", 0)],  # a turn the run does not have reads as 0 (unknown)
            None,
        ),
        (
            '{"findings": [{"mode": "incorrect verification", "turn": 2, "role": "r", "evidence": "x"}, 7]}',
            [("incorrect verification", 2)],
            "the judge's answer had an item that is not an object (left out)",
        ),
        ('{"verdict": "fine"}', [], 'the judge\'s answer had no "findings" list'),
        ("[" * 5000, [], "the judge's answer was not JSON: '" + "[" * 120 + "'"),
        (
            '{"findings": [{"mode": "step repetition", "turn": 1, "role": "r", "evidence": "x"}]}',
            [],
            "the judge's answer had an unknown mode 'step repetition' (left out)",
        ),  # a ruled mode is the rules'
        ("", [], "the judge's answer was not JSON: ''"),
    ],
)
def test_the_judge_s_answer_is_read_defensively(
    answer: str, modes: list[tuple[str, int]], note: str | None
) -> None:
    found, said = parse_answer(answer, max_turn=5)
    assert [(f.mode, f.turn) for f in found] == modes
    assert all(f.by == "judge" for f in found)
    assert said == note


def test_too_many_judge_findings_are_capped_and_said() -> None:
    item = {"mode": "task derailment", "turn": 1, "role": "w", "evidence": "e" * 1000}
    found, note = parse_answer(json.dumps({"findings": [item] * 25}), max_turn=3)
    assert len(found) == 20 and all(len(f.evidence) == 400 and f.evidence.endswith("…") for f in found)
    assert note == "the judge's answer had 5 findings over the limit of 20 (left out)"


def test_the_judge_is_asked_about_the_modes_no_rule_sees() -> None:
    events = [
        MessageEvent(source="writer", turn=1, content="Draft one"),
        RunResult(stop_reason="stop_text", turns=1, prompt_tokens=0, completion_tokens=0, cost_usd=None),
    ]
    text = prompt(events, TASK, ["writer", "editor"])
    assert f"Task: {TASK}" in text and "Roles: writer, editor" in text and "[1] writer: Draft one" in text
    assert all(f"- {m} (" in text for m in JUDGED)
    assert "- step repetition (" not in text


RESET_SCRIPT = """\
roles:
  researcher:
    - "Facts: refunds within 30 days, and a photo for damaged items."
    - "Facts: refunds within 30 days, and a photo for damaged items."
  writer:
    - "Draft: send a photo within 30 days and get your money back."
    - "Draft: send a photo within 30 days and get your money back."
  editor:
    - "Say how long the money takes to arrive."
"""


def _run_one(suite: Path, name: str) -> dict[str, Any]:
    loaded = load_suite(suite)
    jobs = [j for j in plan([loaded], variants([])) if j.scenario.name == name]
    (record,) = asyncio.run(Runner(store=None).run(jobs))
    return record


def test_a_real_run_that_starts_over_is_a_conversation_reset(tmp_path: Path) -> None:
    (tmp_path / "reset.yaml").write_text(RESET_SCRIPT, encoding="utf-8")
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"suite: reset\nscenarios:\n  - name: starts-over\n    team: content-studio\n    task: {TASK}\n"
        "    model: scripted:reset.yaml\n    max_turns: 5\n",
        encoding="utf-8",
    )
    found = [(f["mode"], f["turn"], f["role"]) for f in _run_one(suite, "starts-over")["findings"]]
    assert found == [
        ("conversation reset", 4, "researcher"),
        ("unaware of termination conditions", 5, "writer"),
    ]


def test_the_failing_example_ends_prematurely_where_its_refund_was_never_made() -> None:
    record = _run_one(ROOT / "evals" / "examples" / "failing-example.yaml", "reply-misses-the-refund")
    (found,) = record["findings"]
    assert (found["mode"], found["group"], found["turn"]) == ("premature termination", "task verification", 3)
    assert found["evidence"].endswith("tool_called: issue_refund was never called")
