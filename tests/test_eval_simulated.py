"""The simulated human of evaluation suites (`human: {simulate: ...}`), played by a scripted model: it answers
what no scripted step answers, steps in when the conversation drifts (at most max_messages times), is metered
apart from the team, and a bad block is refused naming the file, scenario and key."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _support import team_yaml

from parley.cli import main
from parley.errors import TeamFileError
from parley.evals import Runner, load_suite, plan, variants
from parley.evals._simulated import read_choice

Write = Callable[[str, str], Path]
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "evals" / "examples" / "simulated-human.yaml"

TEAM = team_yaml(
    "round_robin",
    roles=("clerk", "checker"),
    max_turns=6,
    stop_text="DONE",
    stop_from=("checker",),
    tools={"clerk": ["calculate", "ask_human"]},
)
TEAM_SCRIPT = """
roles:
  clerk:
    - "Draft one"
    - tool: ask_human
      args: {question: "Which currency?"}
    - "Total 42 EUR"
  checker: ["Let us talk about the weather instead", "Correct. DONE"]
"""


def _suite(write: Write, person: str, human: str = "", *, max_messages: int = 2) -> Path:
    """The invoice team on its script, with a simulated person on `person` (a script) beside `human` steps."""
    write("team.yaml", TEAM)
    write("team-script.yaml", TEAM_SCRIPT)
    write("person.yaml", person)
    return write(
        "suite.yaml",
        f"""
        suite: t
        defaults: {{team: team.yaml}}
        scenarios:
          - name: invoice
            task: Total the invoice
            model: scripted:team-script.yaml
            human:
              - simulate:
                  goal: the invoice totalled in euros
                  persona: a busy shop owner
                  knows: {{currency: EUR}}
                  model: scripted:person.yaml
                  max_messages: {max_messages}
        {human}
            expect:
              - final_contains: DONE
        """,
    )


async def _record(path: Path) -> dict[str, Any]:
    [record] = await Runner(store=None).run(plan([load_suite(path)], variants([])))
    return record


async def test_it_answers_questions_and_steps_in_when_the_conversation_drifts(write: Write) -> None:
    path = _suite(
        write,
        """
        roles:
          human_check: [on_track, "DRIFT.", on_track]
          human: ["Please just total my invoice.", "EUR"]
        """,
    )
    record = await _record(path)
    assert record["passed"], record["expectations"]
    # after turn 1 on track; after turn 2 (the weather) it drifted: one message; turn 3's question answered
    # from what it knows; its script has no verdict for turn 4, so from then on it leaves the conversation be
    assert record["human"] == [
        "after turn 2: said 'Please just total my invoice.' (the conversation drifted)",
        "turn 3: answered 'Which currency?' with 'EUR'",
    ]
    sim = record["simulated_human"]
    [said] = sim["messages"]
    assert (said["turn"], said["text"], said["delivered"]) == (2, "Please just total my invoice.", True)
    assert said["joined_after_turn"] >= 2  # at the first turn boundary after it wrote it
    assert sim["model"].endswith("person.yaml") and sim["goal"] == "the invoice totalled in euros"
    # metered apart: five calls of its own, none of them in the team's figures
    assert sim["calls"] == 5 and sim["total_tokens"] > 0
    assert sim["total_tokens"] == sim["prompt_tokens"] + sim["completion_tokens"]
    speakers = {u["speaker"] for u in record["usage_per_speaker"]}
    assert "human" not in speakers and "human_check" not in speakers
    assert record["total_tokens"] == sum(
        u["prompt_tokens"] + u["completion_tokens"] for u in record["usage_per_speaker"]
    )


async def test_a_scripted_step_wins_over_the_simulated_human(write: Write) -> None:
    # The person's script has no words at all: were it asked the question, the scenario would fail.
    path = _suite(
        write,
        "roles:\n  human_check: [on_track, on_track, on_track]\n  human: []\n",
        "      - question: currency\n                answer: USD",
    )
    record = await _record(path)
    assert record["passed"], record["expectations"]
    assert record["human"] == ["turn 3: answered 'Which currency?' with 'USD'"]
    assert record["simulated_human"]["messages"] == []


async def test_max_messages_bounds_how_often_it_steps_in(write: Write) -> None:
    path = _suite(
        write,
        "roles:\n  human_check: [drift, drift, drift, drift]\n  human: [Focus please, EUR, Again, And again]\n",
        max_messages=1,
    )
    record = await _record(path)
    assert [m["text"] for m in record["simulated_human"]["messages"]] == ["Focus please"]
    assert "turn 3: answered 'Which currency?' with 'EUR'" in record["human"]


async def test_answers_are_read_defensively_and_what_it_cannot_answer_fails_the_scenario(
    write: Write,
) -> None:
    # an unreadable drift verdict is taken as on track (noted); the question gets no answer: its script ran out
    path = _suite(write, "roles:\n  human_check: ['well, hmm']\n  human: []\n")
    record = await _record(path)
    assert not record["passed"]
    failed = [e for e in record["expectations"] if e["outcome"] == "failed"]
    assert [e["kind"] for e in failed] == ["simulated_human"]
    assert "the simulated human could not answer" in failed[0]["message"]
    assert "ran past the end of its script" in failed[0]["message"]
    assert "after turn 1: drift check answer unreadable ('well, hmm'): on track" in record["human"]


def test_the_shipped_example_approves_a_refund_and_steers_the_team_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["eval", str(EXAMPLE), "--no-save", "--out", str(out), "--repeat", "2"]) == 0
    printed = capsys.readouterr().out
    assert "simulated humans: 12 calls" in printed and "(not in the teams' figures)" in printed
    records = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["repeat"] for r in records] == [1, 2] and all(r["passed"] for r in records)
    for r in records:
        assert r["human"][-1] == "turn 4: issue_refund approved"
        [said] = r["simulated_human"]["messages"]
        assert said["turn"] == 1 and "money back for order 1042" in said["text"] and said["delivered"]
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "## Simulated humans" in summary and "not in the teams' figures" in summary
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Simulated humans</h2>" in report and "A refund for order 1042" in report


def test_a_bad_simulate_block_names_the_file_scenario_and_key(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        "bad.yaml",
        """
        suite: s
        scenarios:
          - name: refund
            team: customer-support
            task: hi
            human:
              simulate:
                goall: a refund
                model: local
                max_messages: many
                knows: {order: [1, 2]}
          - name: twice
            team: customer-support
            task: hi
            human:
              - {approval: any, decision: approve}
              - simulate: {goal: a refund, model: local, persona: 3}
        """,
    )
    with pytest.raises(TeamFileError) as err:
        load_suite(path)
    text = str(err.value)
    assert (
        "bad.yaml:8: scenarios[0].human.simulate.goall: scenario 'refund', simulated human: "
        "unknown key 'goall' (did you mean 'goal'?)"
    ) in text
    assert (
        "bad.yaml:7: scenarios[0].human.simulate.goal: scenario 'refund', simulated human: required" in text
    )
    assert (
        "scenarios[0].human.simulate.max_messages: scenario 'refund', simulated human: Input should be"
        in text
    )
    assert "knows.order: a fact is text, a number or true/false" in text
    assert "bad.yaml:17: scenarios[1].human[1].simulate.persona: scenario 'twice', simulated human:" in text
    assert main(["eval", str(path), "--no-save"]) == 2
    assert "bad.yaml:8:" in capsys.readouterr().err

    path = write(
        "bad2.yaml",
        """
        suite: s
        scenarios:
          - name: two
            team: customer-support
            task: hi
            human:
              - simulate: {goal: a, model: "scripted:/etc/passwd.yaml"}
              - simulate: {goal: b, model: local}
          - name: three
            team: customer-support
            task: hi
            human: {simulate: {goal: a refund, model: gpt4}}
        """,
    )
    with pytest.raises(TeamFileError) as err:
        load_suite(path)
    text = str(err.value)
    assert "bad2.yaml:8: scenarios[0].human[1]: scenario 'two', simulated human: give one simulate:" in text
    assert "bad2.yaml:7: scenarios[0].human[0].simulate.model: scenario 'two', simulated human: " in text
    assert "'/etc/passwd.yaml' is outside the suite's folder" in text
    assert (
        "scenarios[1].human.simulate.model: scenario 'three', simulated human: unknown model backend" in text
    )


def _escalating(write: Write, person: str) -> Path:
    """A clerk whose answer fails its check with no corrections left: the run asks the human to settle it."""
    team = team_yaml("round_robin", roles=("clerk",), max_turns=1).replace(
        "    prompt: You are clerk.\n",
        "    prompt: You are clerk.\n    validate: {contains: [EUR], retries: 0}\n",
    )
    write("team.yaml", team)
    write("s.yaml", "roles:\n  clerk: ['42 dollars']\n")
    write("person.yaml", person)
    return write(
        "suite.yaml",
        """
        suite: t
        defaults: {team: team.yaml}
        scenarios:
          - name: settle
            task: Total it
            model: scripted:s.yaml
            human: {simulate: {goal: a total in euros, model: "scripted:person.yaml"}}
            expect: [{escalated: true}]
        """,
    )


async def test_it_settles_an_escalation_by_choosing_a_position(write: Write) -> None:
    record = await _record(_escalating(write, "roles:\n  human: ['Position 1, please.']\n"))
    assert record["passed"], record["expectations"]
    assert record["human"] == ["turn 1: validation escalation: chose 1"]
    assert record["simulated_human"]["calls"] == 1  # no drift verdicts in its script: no checks


async def test_an_answer_naming_no_position_leaves_the_escalation_open_and_fails(write: Write) -> None:
    record = await _record(_escalating(write, "roles:\n  human: ['Whatever you think']\n"))
    assert record["stop_reason"] == "escalation" and not record["passed"]
    [failed] = [e for e in record["expectations"] if e["outcome"] == "failed"]
    assert failed["kind"] == "simulated_human"
    assert "validation escalation (turn 1) left open: answer 'Whatever you think'" in failed["message"]


async def test_an_approval_it_cannot_read_is_denied_and_fails_the_scenario(write: Write) -> None:
    write(
        "person.yaml",
        """
        roles:
          human_check: [on_track, on_track, on_track, on_track]
          human: ["Hmm, what would you do?"]
        """,
    )
    team_script = ROOT / "evals" / "scripts" / "simulated-refund-team.yaml"
    path = write(
        "suite.yaml",
        f"""
        suite: t
        scenarios:
          - name: refund
            team: customer-support
            task: Order 1042 arrived broken, I want my money back
            model: scripted:{team_script}
            human: {{simulate: {{goal: a refund, model: "scripted:person.yaml"}}}}
        """,
    )
    record = await _record(path)
    assert record["human"] == ["turn 4: issue_refund denied"]
    [failed] = [e for e in record["expectations"] if e["outcome"] == "failed"]
    assert failed["kind"] == "simulated_human" and not record["passed"]
    assert (
        "approval of issue_refund (turn 4): unreadable answer 'Hmm, what would you do?'" in failed["message"]
    )


def test_a_simulated_humans_script_is_read_before_anything_runs(write: Write) -> None:
    write("broken.yaml", "roles:\n  human: [{tool: 3}]\n")
    path = write(
        "suite.yaml",
        """
        suite: s
        scenarios:
          - name: missing
            team: customer-support
            task: hi
            human: {simulate: {goal: a refund, model: "scripted:nowhere.yaml"}}
          - name: broken
            team: customer-support
            task: hi
            human: {simulate: {goal: a refund, model: "scripted:broken.yaml"}}
        """,
    )
    with pytest.raises(TeamFileError) as err:
        load_suite(path)
    text = str(err.value)
    assert (
        "suite.yaml:6: scenarios[0].human.simulate.model: scenario 'missing', simulated human: no script"
        in text
    )
    assert "broken.yaml:2:" in text and "scenario 'broken', simulated human:" in text


@pytest.mark.parametrize(
    ("text", "choices", "read"),
    [
        ("DRIFT.", ["on_track", "drift"], "drift"),
        ("On track", ["on_track", "drift"], "on_track"),
        ('{"answer": "drift"}', ["on_track", "drift"], "drift"),
        ("on_track, not drift", ["on_track", "drift"], None),  # names both: unreadable
        ("drifting", ["on_track", "drift"], None),
        ("Sure, I approve!", ["approve", "deny"], "approve"),
        ("approved", ["approve", "deny"], None),
        ("Position 1, please.", ["1", "2", "3"], "1"),
        ("1 or 2", ["1", "2", "3"], None),
        ("1.5", ["1", "2", "3"], None),
        ("[" * 10_000, ["1", "2"], None),  # hostile nesting is just text
    ],
)
def test_a_strict_answer_is_read_only_when_it_names_exactly_one_choice(
    text: str, choices: list[str], read: str | None
) -> None:
    assert read_choice(text, choices) == read
