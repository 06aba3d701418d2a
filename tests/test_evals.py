"""`parley eval`: the suite format, the scripted human, every expectation kind, and concurrency."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _support import team_yaml

from parley.cli import main
from parley.errors import TeamFileError
from parley.evals import (
    Expectation,
    Observed,
    Runner,
    Scenario,
    ScriptedHuman,
    check,
    load_suite,
    plan,
    variants,
)
from parley.events import (
    ApprovalRequestEvent,
    EscalationEvent,
    Event,
    FileEvent,
    MessageEvent,
    Position,
    QuestionEvent,
    RunResult,
    SubtaskEvent,
    ToolCallEvent,
    VoteEvent,
)
from parley.human import HumanPolicy, decide

Write = Callable[[str, str], Path]

TEAM = team_yaml(
    "round_robin",
    roles=("clerk", "checker"),
    max_turns=4,
    stop_text="DONE",
    stop_from=("checker",),
    tools={"clerk": ["calculate", "ask_human"]},
)


def _suite(write: Write, scenarios: str) -> Path:
    write("team.yaml", TEAM)
    return write("suite.yaml", "suite: t\ndefaults: {team: team.yaml}\nscenarios:\n" + scenarios)


async def _records(path: Path, concurrency: int = 1) -> list[dict[str, Any]]:
    runner = Runner(store=None)
    return await runner.run(plan([load_suite(path)], variants([])), concurrency)


def test_bad_suites_are_refused_with_file_and_line_before_anything_runs(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        "bad.yaml",
        """
        suite: s
        scenarios:
          - name: a
            team: customer-support
            task: hi
            expect:
              - final_contains: x
                spoke: [a]
              - finall_contains: y
            human:
              - at_turn: 1
              - approve: issue_refund
    """,
    )
    with pytest.raises(TeamFileError) as err:
        load_suite(path)
    text = str(err.value)
    assert "bad.yaml:7: scenarios[0].expect[0]: write one expectation per item" in text
    assert "unknown key 'finall_contains' (did you mean 'final_contains'?)" in text
    assert "give `say: TEXT` or `interrupt: TEXT` with at_turn" in text
    assert "a human step starts with at_turn:, approval:, escalation: or question:" in text
    assert main(["eval", str(path), "--no-save"]) == 2
    assert "bad.yaml:" in capsys.readouterr().err
    path = write(
        "bad2.yaml",
        """
        suite: s
        scenarios:
          - {name: a, team: customer-support, task: hi}
          - {name: a, task: hi, model: gpt4}
    """,
    )
    with pytest.raises(TeamFileError) as err:
        load_suite(path)
    text = str(err.value)
    assert "bad2.yaml:4: scenarios[1].name: duplicate scenario name 'a'" in text and "names no team" in text
    assert "unknown model backend 'gpt4'" in text
    assert main(["eval", str(path), "--no-save"]) == 2
    assert "bad2.yaml:4:" in capsys.readouterr().err


FAILING = {
    "final_contains": ("final_contains: approved", "the final answer does not contain 'approved'"),
    "final_matches": ("final_matches: 'total\\s+\\d+'", "the final answer does not match /total\\s+\\d+/"),
    "spoke": ("spoke: [clerk, auditor]", "auditor never spoke"),
    "not_spoke": ("not_spoke: [checker]", "checker spoke"),
    "speaker_order": (
        "speaker_order: [checker, clerk]",
        "first appearances were clerk → checker, not checker → clerk",
    ),
    "tool_called": (
        "tool_called: {name: calculate, args_contain: {expression: '2+2'}}",
        "no call to calculate had arguments {'expression': '2+2'}",
    ),
    "tool_not_called": ("tool_not_called: calculate", "calculate was called 1 time(s)"),
    "escalated": ("escalated: true", "no escalation was raised"),
    "stop_reason": ("stop_reason: max_turns", "the run stopped with stop_text (checker said DONE)"),
    "max_turns": ("max_turns: 1", "the run took 2 turns"),
    "max_total_tokens": ("max_total_tokens: 10", "the run used"),
    "max_latency_s": ("max_latency_s: 0.000001", "the run took"),
    "file_written": ("file_written: decks/*.pptx", "no file matching decks/*.pptx was written"),
    "vote_decision": ("vote_decision: invest", "no vote was decided"),
    "delegated_to": ("delegated_to: [researcher]", "no sub-task went to researcher"),
}


@pytest.mark.parametrize("kind", sorted(FAILING))
async def test_every_expectation_kind_can_fail_and_says_why(write: Write, kind: str) -> None:
    expectation, message = FAILING[kind]
    write(
        "s.yaml",
        """
        roles:
          clerk: [{tool: calculate, args: {expression: "6*7"}}, "The answer is 42"]
          checker: ["Checked. DONE"]
    """,
    )
    path = _suite(
        write,
        f"""
  - name: broken
    task: Work out 6*7
    model: scripted:s.yaml
    expect:
      - {expectation}
      - stop_reason: stop_text
""",
    )
    [record] = await _records(path)
    first, second = record["expectations"]
    assert first["kind"] == kind and first["outcome"] == "failed" and message in first["message"]
    assert second["outcome"] == "passed"
    assert record["passed"] is False


async def test_the_judge_is_skipped_never_passed_without_a_live_model(write: Write) -> None:
    write("s.yaml", "roles:\n  clerk: ['42']\n  checker: ['DONE']\n")
    path = _suite(
        write, "  - {name: j, task: t, model: scripted:s.yaml, expect: [{judge: 'Is it right?'}]}\n"
    )
    [record] = await _records(path)
    assert [e["outcome"] for e in record["expectations"]] == ["skipped"] and record["passed"] is True


async def test_the_scripted_human_acts_at_the_right_turn(write: Write) -> None:
    write(
        "s.yaml",
        """
        roles:
          clerk:
            - "Draft one"
            - tool: ask_human
              args: {question: "Which currency?"}
            - "Total 42 EUR"
          checker: ["Needs the currency", "Correct. DONE"]
    """,
    )
    path = _suite(
        write,
        """
  - name: human
    task: Total the invoice
    model: scripted:s.yaml
    human:
      - at_turn: 2
        say: "Use euros"
      - question: currency
        answer: "EUR"
    expect:
      - final_contains: DONE
""",
    )
    runner = Runner(store=None)
    [record] = await runner.run(plan([load_suite(path)], variants([])))
    assert record["passed"], record["expectations"]
    assert record["human"] == [
        "after turn 2: say 'Use euros'",
        "turn 3: answered 'Which currency?' with 'EUR'",
    ]
    said = [(m["turn"], m["source"], m["content"]) for m in record["transcript"]]
    assert said[:2] == [(1, "clerk", "Draft one"), (2, "checker", "Needs the currency")]
    assert said[-1] == (4, "checker", "Correct. DONE")


async def test_escalations_from_the_scripted_human(write: Write) -> None:
    team = team_yaml("round_robin", roles=("clerk",), max_turns=1).replace(
        "    prompt: You are clerk.\n",
        "    prompt: You are clerk.\n    validate: {contains: [EUR], retries: 0}\n",
    )
    write("team.yaml", team)
    write("s.yaml", "roles:\n  clerk: ['42 dollars', 'Still 42 dollars']\n")
    path = write(
        "suite.yaml",
        """
        suite: t
        defaults: {team: team.yaml}
        scenarios:
          - name: settled
            task: Total it
            model: scripted:s.yaml
            human: [{escalation: validation, say: "42 EUR"}]
            expect: [{escalated: true}, {final_contains: "42 EUR"}]
          - name: unanswered
            task: Total it
            model: scripted:s.yaml
            expect: [{stop_reason: escalation}]
    """,
    )
    settled, unanswered = await _records(path)
    assert settled["passed"], settled["expectations"]
    assert settled["human"] == ["turn 1: validation escalation: wrote '42 EUR'"]
    assert not unanswered["passed"]
    failed = [e for e in unanswered["expectations"] if e["outcome"] == "failed"]
    assert [e["kind"] for e in failed] == ["scripted_human"]
    assert "no answer for: validation escalation (turn 1)" in failed[0]["message"]


async def test_concurrency_gives_the_same_results(write: Write) -> None:
    write(
        "s.yaml",
        """
        roles:
          clerk: [{tool: calculate, args: {expression: "6*7"}}, "The answer is 42"]
          checker: ["Checked. DONE"]
        delay_s: 0.05
    """,
    )
    scenarios = "".join(
        f"""
  - name: s{i}
    task: Work out 6*7 ({i})
    model: scripted:s.yaml
    repeat: 2
    expect: [{{final_contains: DONE}}, {{tool_called: calculate}}, {{max_turns: {1 + i % 2}}}]
"""
        for i in range(4)
    )
    path = _suite(write, scenarios)

    def comparable(records: list[dict[str, Any]]) -> list[str]:
        drop = {"latency_s", "run_id"}
        return sorted(
            json.dumps({k: v for k, v in r.items() if k not in drop}, sort_keys=True, default=str)
            for r in records
        )

    one = await _records(path, concurrency=1)
    four = await _records(path, concurrency=4)
    assert len(one) == 8 and comparable(one) == comparable(four)
    assert [r["passed"] for r in sorted(one, key=lambda r: r["scenario"])] == [False, False, True, True] * 2


async def test_approvals_from_the_scripted_human(write: Write) -> None:
    write(
        "s.yaml",
        """
        roles:
          billing: [{tool: issue_refund, args: {order_id: 1042, amount: 1.0, reason: broken}}, "Refunded."]
        selector: [billing, billing]
    """,
    )
    path = write(
        "suite.yaml",
        """
        suite: t
        scenarios:
          - name: approved
            team: customer-support
            task: Refund 1042
            model: scripted:s.yaml
            max_turns: 2
            human: [{approval: issue_refund, decision: approve}]
            expect: [{tool_called: issue_refund}]
          - name: denied
            team: customer-support
            task: Refund 1042
            model: scripted:s.yaml
            max_turns: 2
            human: [{approval: any, decision: deny, reason: "over the limit"}]
            expect: [{tool_called: issue_refund}]
    """,
    )
    approved, denied = await _records(path)
    assert approved["passed"] and approved["human"] == ["turn 1: issue_refund approved"]
    assert (
        "Refunded 1.00" in approved["transcript"][0]["content"]
        or "refund" in approved["transcript"][0]["content"].lower()
    )
    assert denied["human"] == ["turn 1: issue_refund denied"]
    assert "denied: over the limit" in denied["transcript"][0]["content"]


def test_the_command_writes_the_three_reports_and_exits_by_outcome(
    write: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write("s.yaml", "roles:\n  clerk: ['The answer is 42']\n  checker: ['Checked. DONE']\n")
    path = _suite(
        write,
        """
  - {name: good, task: t, model: scripted:s.yaml, expect: [{final_contains: DONE}]}
""",
    )
    out = tmp_path / "out"
    assert main(["eval", str(path), "--out", str(out)]) == 0
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["passed"] and lines[0]["run_id"]
    assert "| test-team (round_robin) | 100% (1/1) |" in (out / "summary.md").read_text()
    assert "<img" in (out / "report.html").read_text()
    stdout = capsys.readouterr().out
    assert "100% passed (1/1)" in stdout
    bad = _suite(
        write, "  - {name: bad, task: t, model: scripted:s.yaml, expect: [{final_contains: nope}]}\n"
    )
    assert main(["eval", str(bad), "--out", str(out), "--no-save"]) == 1
    assert "the final answer does not contain 'nope'" in (out / "summary.md").read_text()


def test_ctrl_c_stops_cleanly_and_keeps_what_finished(write: Write, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    write("s.yaml", "roles:\n  clerk: ['The answer is 42']\n  checker: ['Checked. DONE']\ndelay_s: 1.0\n")
    path = _suite(
        write,
        "".join(
            f"  - {{name: s{i}, task: t, model: scripted:s.yaml, expect: [{{final_contains: DONE}}]}}\n"
            for i in range(6)
        ),
    )
    out = tmp_path / "out"
    parley = str(Path(sys.executable).parent / "parley")
    proc = subprocess.Popen(
        [parley, "eval", str(path), "--out", str(out), "--no-save"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the progress line of the first finished scenario
    assert "1/6 done · 1 passed" in first
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    finished = [r for r in records if r["status"] == "done"]
    assert len(finished) >= 1 and all(r["passed"] for r in finished)
    assert len(records) < 6 and "scenario runs finished" in stderr
    assert (out / "report.html").is_file() and "wrote" in stdout


def test_a_live_judge_grades_and_its_tokens_are_reported_apart(
    write: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write("s.yaml", "roles:\n  clerk: ['The answer is 42']\n  checker: ['Checked. DONE']\n")
    judge = write("judge.yaml", 'roles:\n  judge: [\'{"answer": "yes"}\', \'{"answer": "no"}\']\n')
    path = _suite(
        write,
        """
  - {name: graded, task: t, model: scripted:s.yaml, expect: [{judge: 'Is the answer 42?'}]}
  - {name: failed, task: t, model: scripted:s.yaml, expect: [{judge: 'Is it in French?'}]}
""",
    )
    out = tmp_path / "out"
    assert (
        main(["eval", str(path), "--out", str(out), "--no-save", "--judge-model", f"scripted:{judge}"]) == 1
    )
    lines = {x["scenario"]: x for x in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert [e["outcome"] for e in lines["graded"]["expectations"]] == ["passed"]
    assert [e["outcome"] for e in lines["failed"]["expectations"]] == ["failed"]
    stdout = capsys.readouterr().out
    assert f"judge (scripted:{judge}): 2 calls" in stdout and "not in the teams' figures" in stdout


def _observed() -> Observed:
    events: list[Event] = [
        MessageEvent(source="clerk", content="Total 42", turn=1),
        MessageEvent(source="checker", content="Checked", turn=2, kind="tool_summary"),
        ToolCallEvent(
            source="clerk", name="calculate", arguments={"expression": "6*7", "n": 1042}, call_id="a", turn=1
        ),
        EscalationEvent(
            escalation_id="e", kind="tie", positions=[Position(who="a", text="x")], content="a tie", turn=2
        ),
        FileEvent(
            name="decks/q3.pptx", path="/w/decks/q3.pptx", mime="application/x", size=1, tool="make_slides"
        ),
        VoteEvent(round=1, votes={"a": "invest"}, tally={"invest": 1}, outcome="majority", content="round 1"),
        VoteEvent(
            round=2,
            votes={"a": "invest"},
            tally={"invest": 1},
            outcome="majority",
            decision="Invest",
            content="round 2",
        ),
        SubtaskEvent(subtask_id="s", worker="researcher", task="look", status="started"),
    ]
    result = RunResult(
        stop_reason="stop_text",
        turns=2,
        content="Total 42 EUR. DONE",
        prompt_tokens=90,
        completion_tokens=10,
        cost_usd=None,
    )
    return Observed(events=events, result=result, latency_s=0.5)


PASSING: list[tuple[dict[str, Any], list[str]]] = [
    ({"final_contains": "total 42"}, ["final answer: 'Total 42 EUR. DONE'"]),
    ({"final_matches": r"\d+ EUR"}, ["final answer: 'Total 42 EUR. DONE'"]),
    ({"spoke": ["clerk", "checker"]}, ["speakers: clerk, checker"]),
    ({"not_spoke": ["auditor"]}, []),
    ({"speaker_order": ["clerk", "checker"]}, ["speakers: clerk → checker"]),
    ({"tool_called": "calculate"}, []),
    ({"tool_called": {"name": "calculate", "args_contain": {"n": "1042"}}}, []),
    ({"tool_not_called": "issue_refund"}, []),
    ({"escalated": True}, ["[2] tie: a tie"]),
    ({"stop_reason": "stop_text"}, []),
    ({"max_turns": 2}, []),
    ({"max_total_tokens": 100}, []),
    ({"max_latency_s": 1.0}, []),
    ({"file_written": "decks/*.pptx"}, ["files written: decks/q3.pptx"]),
    ({"vote_decision": "invest"}, ["round 1", "round 2"]),
    ({"delegated_to": ["researcher"]}, ["delegated to: researcher"]),
]


@pytest.mark.parametrize(("expectation", "evidence"), PASSING, ids=[next(iter(e)) for e, _ in PASSING])
def test_every_expectation_kind_passes_on_what_the_run_did(
    expectation: dict[str, Any], evidence: list[str]
) -> None:
    outcome = check(Expectation.model_validate(expectation), _observed())
    assert (outcome.outcome, outcome.message, outcome.evidence) == ("passed", "", evidence)


def test_an_unknown_cost_skips_the_cost_limit_and_a_tool_call_failure_names_the_tools_called() -> None:
    seen = _observed()
    cost = check(Expectation(max_cost_usd=0.01), seen)
    assert (cost.outcome, cost.message) == ("skipped", "the cost is unknown (no price for this model)")
    missing = check(Expectation(tool_called="web_search"), seen)
    assert (missing.outcome, missing.message, missing.evidence) == (
        "failed",
        "web_search was never called",
        ["tools called: calculate"],
    )
    spoke = check(Expectation(not_spoke=["checker"]), seen)
    assert spoke.evidence == ["[2] checker: Checked"]


class _OpenRequests:
    """The little of a run the scripted human answers: what is still open, and the decisions taken."""

    def __init__(self, *open_requests: ApprovalRequestEvent) -> None:
        self.pending_approvals = list(open_requests)
        self.pending_questions: list[QuestionEvent] = []
        self.pending_escalations: list[EscalationEvent] = []
        self.done: list[tuple[str, str, str]] = []

    def approve(self, request_id: str, *, actor: str = "user") -> None:
        self.done.append(("approve", request_id, actor))

    def deny(self, request_id: str, reason: str = "", *, actor: str = "user") -> None:
        self.done.append(("deny", request_id, reason))

    def answer(self, question_id: str, text: str, *, actor: str = "user") -> None:
        raise AssertionError("no question is open")

    def resolve(self, escalation_id: str, **_: object) -> None:
        raise AssertionError("no escalation is open")

    def leave_escalated(self) -> None:
        raise AssertionError("no escalation is open")


def test_the_scripted_human_is_a_human_policy_and_leaves_settled_requests_alone() -> None:
    scenario = Scenario.model_validate(
        {
            "name": "s",
            "task": "t",
            "human": [{"approval": "shop.*", "decision": "deny", "reason": "not in tests"}],
        }
    )
    human: HumanPolicy = ScriptedHuman(scenario.human)
    refund = ApprovalRequestEvent(request_id="r1", name="shop.refund", arguments={}, turn=2)
    settled = ApprovalRequestEvent(request_id="r0", name="shop.refund", arguments={}, turn=1)
    run = _OpenRequests(refund)
    assert decide(human, run, settled) is False  # decided already (another page, a standing rule)
    assert decide(human, run, refund) is True
    assert run.done == [("deny", "r1", "not in tests")]
    assert isinstance(human, ScriptedHuman) and human.log == ["turn 2: shop.refund denied"]


async def test_each_record_says_what_each_speaker_used(write: Write) -> None:
    write("s.yaml", "roles:\n  clerk: ['The answer is 42']\n  checker: ['Checked. DONE']\n")
    path = _suite(write, "  - {name: u, task: t, model: scripted:s.yaml, expect: [{final_contains: DONE}]}\n")
    [record] = await _records(path)
    rows = record["usage_per_speaker"]
    assert [(r["speaker"], r["turns"]) for r in rows] == [("clerk", 1), ("checker", 1)]
    assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 for r in rows)
    assert sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) == record["total_tokens"]


async def test_without_a_model_in_the_suite_each_role_runs_on_its_own_model(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARLEY_MODEL", raising=False)
    team_script = write("team-script.yaml", "roles:\n  clerk: ['The answer is 42']\n")
    checker_script = write("checker-script.yaml", "roles:\n  checker: ['Checked by my own model. DONE']\n")
    team = team_yaml(
        "round_robin", roles=("clerk", "checker"), max_turns=2, stop_text="DONE", stop_from=("checker",)
    )
    team = team.replace("pattern: round_robin\n", f"pattern: round_robin\nmodel: scripted:{team_script}\n")
    team = team.replace(
        "    prompt: You are checker.\n",
        f"    prompt: You are checker.\n    model: scripted:{checker_script}\n",
    )
    write("team.yaml", team)
    path = write(
        "suite.yaml", "suite: t\ndefaults: {team: team.yaml}\nscenarios:\n  - {name: own, task: t}\n"
    )
    [record] = await _records(path)
    said = [(m["source"], m["content"]) for m in record["transcript"]]
    assert said == [("clerk", "The answer is 42"), ("checker", "Checked by my own model. DONE")], record[
        "error"
    ]
    assert record["model"] == f"scripted:{team_script}"  # the team's model, as the conversation chose it
