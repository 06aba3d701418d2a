"""Failure-mode findings from a run's events: each rule on a crafted run that shows its failure and on runs that
do not; none on any shipped suite's run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from parley.evals import Runner, load_suite, plan, variants
from parley.evals._findings import JUDGED, MODES, Finding, content_words, detect, similar, words_of
from parley.events import (
    AnswerEvent,
    Event,
    HumanMessageEvent,
    MessageEvent,
    QuestionEvent,
    RunResult,
    RunStartedEvent,
    StopReason,
    SubtaskEvent,
    ToolCallEvent,
    ToolResultEvent,
)

ROOT = Path(__file__).resolve().parent.parent
ROLES = ["researcher", "writer", "reviewer"]
GRANTS = {
    "researcher": ["kb_search", "docs.*"],
    "writer": ["write_file", "transfer_to_reviewer"],
    "reviewer": [],
}


def say(role: str, turn: int, text: str) -> MessageEvent:
    return MessageEvent(source=role, turn=turn, content=text)


def call(
    role: str, turn: int, name: str, args: dict[str, Any], result: str = "ok", *, error: bool = False
) -> list[Event]:
    cid = f"c{turn}{name}{len(str(args))}{result}"
    return [
        ToolCallEvent(source=role, turn=turn, name=name, arguments=args, call_id=cid, content=str(args)),
        ToolResultEvent(source=role, turn=turn, name=name, call_id=cid, content=result, is_error=error),
    ]


def human(after: int, text: str) -> HumanMessageEvent:
    return HumanMessageEvent(source="user", turn=after, content=text, mode="say")


def run(
    *body: Event | list[Event], stop: StopReason = "stop_text", task: str = "Write a post on refunds"
) -> list[Event]:
    events: list[Event] = [
        RunStartedEvent(source="parley", team="t", model="scripted:x", pattern="round_robin", roles=ROLES),
        HumanMessageEvent(source="user", content=task),
    ]
    for item in body:
        events += item if isinstance(item, list) else [item]
    turns = max((e.turn for e in events), default=0)
    events.append(
        RunResult(
            stop_reason=stop, turns=turns, prompt_tokens=0, completion_tokens=0, cost_usd=0.0, detail=stop
        )
    )
    return events


def modes(found: list[Finding]) -> list[tuple[str, int, str]]:
    return [(f.mode, f.turn, f.role) for f in found]


GOOD = run(
    call("researcher", 1, "kb_search", {"query": "refund policy"}, "30 days, photo"),
    say("researcher", 1, "Refunds: 30 days, a photo for damaged items."),
    human(1, "Write it for first-time buyers, please."),
    say("writer", 2, "Draft for first-time buyers: send a photo within 30 days."),
    say("reviewer", 3, "Accurate and short. APPROVE"),
)


def test_a_run_without_failures_has_no_findings() -> None:
    assert detect(GOOD, grants=GRANTS) == []


def test_every_finding_names_a_mast_mode_and_its_group() -> None:
    assert len(MODES) == 14 and set(MODES.values()) == {
        "specification",
        "inter-agent misalignment",
        "task verification",
    }
    assert "step repetition" not in JUDGED and "task derailment" in JUDGED
    f = Finding("step repetition", 3, "writer", "said again")
    assert f.as_dict() == {
        "mode": "step repetition",
        "group": "specification",
        "turn": 3,
        "role": "writer",
        "evidence": "said again",
        "by": "rule",
    }


# -- step repetition -------------------------------------------------------------------------------------------


def test_a_role_saying_the_same_thing_again_is_step_repetition() -> None:
    events = run(
        say("writer", 1, "Draft: refunds take 30 days."),
        say("reviewer", 2, "Add the photo rule."),
        say("writer", 3, "Draft:  Refunds take 30 days!"),
    )
    (found,) = detect(events)
    assert (found.mode, found.turn, found.role, found.group) == (
        "step repetition",
        3,
        "writer",
        "specification",
    )
    assert "first at turn 1" in found.evidence and "Refunds take 30 days" in found.evidence


def test_different_answers_and_other_roles_echoing_are_not_repetition() -> None:
    events = run(
        say("writer", 1, "Draft 1: refunds take 30 days."),
        say("reviewer", 2, "Draft 1: refunds take 30 days."),  # another role quoting: not this rule
        say(
            "writer", 3, "Draft 2: send a photo of the damage within 30 days; the money is back in 3-5 days."
        ),
    )
    assert detect(events) == []


def test_the_same_call_with_the_same_result_is_repetition_but_a_retry_after_an_error_is_not() -> None:
    again = run(
        call("researcher", 1, "kb_search", {"query": "refunds"}, "30 days"),
        call("researcher", 2, "kb_search", {"query": "refunds"}, "30 days"),
    )
    assert modes(detect(again)) == [("step repetition", 2, "researcher")]
    retry = run(
        call("researcher", 1, "kb_search", {"query": "refunds"}, "timed out", error=True),
        call("researcher", 2, "kb_search", {"query": "refunds"}, "30 days"),
        call(
            "researcher", 3, "kb_search", {"query": "refunds"}, "31 days"
        ),  # the data changed: new information
    )
    assert detect(retry) == []


def test_near_identical_means_nine_words_in_ten_the_same_and_in_order() -> None:
    def alike(a: str, b: str) -> bool:
        return similar(words_of(a), words_of(b))

    assert alike("Draft: refunds take 30 days.", "draft  REFUNDS take 30 days!")
    assert not alike("Draft 1: refunds take 30 days.", "Draft 2: refunds take 30 days.")  # one word in six
    long = " ".join(f"word{i}" for i in range(200))
    assert alike(long, long.replace("word7 ", "other "))  # one word in 200
    assert not alike(long, " ".join(reversed(long.split())))  # the same words in another order
    assert not alike("", "x") and alike("", "")


# -- unaware of termination ---------------------------------------------------------------------------------------


def test_running_to_the_turn_cap_is_unaware_of_termination() -> None:
    events = run(say("writer", 1, "Draft one."), say("reviewer", 2, "Needs work."), stop="max_turns")
    (found,) = detect(events)
    assert (found.mode, found.turn, found.role) == ("unaware of termination conditions", 2, "reviewer")
    assert "turn cap" in found.evidence and "Needs work." in found.evidence
    for stop in ("stop_text", "completed", "handoff", "timeout", "stopped"):
        assert detect(run(say("writer", 1, "Draft one."), stop=stop)) == []


# -- premature termination ------------------------------------------------------------------------------------------


def test_stopping_with_a_sub_task_still_open_is_premature() -> None:
    started = SubtaskEvent(
        source="writer", turn=1, subtask_id="s1", worker="researcher", task="find facts", status="started"
    )
    (found,) = detect(run(started, say("writer", 2, "Done. APPROVE")))
    assert (found.mode, found.turn, found.role, found.group) == (
        "premature termination",
        2,
        "writer",
        "task verification",
    )
    assert "still open: subtask" in found.evidence
    finished = SubtaskEvent(
        source="writer", turn=1, subtask_id="s1", worker="researcher", task="", status="done"
    )
    assert detect(run(started, finished, say("writer", 2, "Done. APPROVE"))) == []


def test_stopping_before_an_expected_step_happened_is_premature() -> None:
    never = {"kind": "tool_called", "outcome": "failed", "message": "issue_refund was never called"}
    wrong_args = {"kind": "tool_called", "outcome": "failed", "message": "no call to x had arguments {}"}
    unspoken = {"kind": "spoke", "outcome": "failed", "message": "billing never spoke"}
    passed = {"kind": "spoke", "outcome": "passed", "message": ""}
    events = run(say("writer", 1, "All done. APPROVE"))
    (found,) = detect(events, outcomes=[never, wrong_args, unspoken, passed])
    assert found.mode == "premature termination"
    assert "issue_refund was never called" in found.evidence and "billing never spoke" in found.evidence
    assert "had arguments" not in found.evidence  # a wrong call is not a missing step
    assert detect(events, outcomes=[wrong_args, passed]) == []
    # A run the team did not end itself (the turn cap, a time-out) is not ended prematurely by the team.
    assert [f.mode for f in detect(run(say("writer", 1, "x"), stop="max_turns"), outcomes=[never])] == [
        "unaware of termination conditions"
    ]


# -- a human's input ignored -----------------------------------------------------------------------------------------


def test_a_human_message_nothing_after_reflects_is_ignored() -> None:
    events = run(
        say("researcher", 1, "Refunds: 30 days, a photo for damaged items."),
        human(1, "Use order 1042, and keep it under 100 words."),
        say("writer", 2, "Draft: send us a photo within 30 days."),
        say("reviewer", 3, "Good. APPROVE"),
    )
    (found,) = detect(events)
    assert (found.mode, found.turn, found.role, found.group) == (
        "ignored other agent's input",
        2,
        "writer",
        "inter-agent misalignment",
    )
    assert "Use order 1042" in found.evidence and "after turn 1" in found.evidence


def test_a_human_message_reflected_in_a_call_or_a_later_turn_is_not_ignored() -> None:
    in_a_call = run(
        say("researcher", 1, "Which order?"),
        human(1, "Sorry, it is order 1042, not 1024"),
        call("writer", 2, "lookup_order", {"order_id": 1042}),
        say("reviewer", 3, "APPROVE"),
    )
    assert detect(in_a_call) == []
    later = run(
        human(0, "Write it for first-time buyers."),
        say("researcher", 1, "Facts: 30 days."),
        say("writer", 2, "Second draft, for first-time buyers: 30 days."),
    )
    assert detect(later) == []


def test_a_message_too_late_or_without_content_words_cannot_be_ignored() -> None:
    too_late = run(say("writer", 1, "Draft. APPROVE"), human(1, "Use order 1042"))
    assert detect(too_late) == []
    no_words = run(say("writer", 1, "Draft."), human(1, "OK, thanks!"), say("reviewer", 2, "APPROVE"))
    assert detect(no_words) == []


def test_an_answer_to_a_question_is_a_human_input_too() -> None:
    asked = QuestionEvent(
        source="writer", turn=1, content="Who is it for?", question_id="q", timeout_s=None, default="-"
    )
    answer = AnswerEvent(source="scripted-human", turn=1, content="Owners of small shops.", question_id="q")
    ignored = run(asked, answer, say("writer", 1, "Draft for large retailers."))
    assert modes(detect(ignored)) == [("ignored other agent's input", 1, "writer")]
    heard = run(asked, answer, say("writer", 1, "Draft for small shops."))
    assert detect(heard) == []


def test_content_words_leave_out_stop_words_and_stem() -> None:
    assert content_words("Sorry, it is order 1042, not 1024 — the buyers' refunds") == {
        "order",
        "1042",
        "1024",
        "buyer",
        "refund",
    }


# -- conversation reset --------------------------------------------------------------------------------------------


def test_replaying_the_opening_turns_is_a_conversation_reset_not_repetitions() -> None:
    events = run(
        call("researcher", 1, "kb_search", {"query": "refunds"}, "30 days"),
        say("writer", 2, "Draft 1: refunds take 30 days."),
        say("reviewer", 3, "Add the photo rule."),
        call("researcher", 4, "kb_search", {"query": "refunds"}, "30 days"),
        say("writer", 5, "Draft 1: refunds take 30 days."),
    )
    (found,) = detect(events)
    assert (found.mode, found.turn, found.role) == ("conversation reset", 4, "researcher")
    assert "turns 4-5 replay the opening turns 1-2" in found.evidence


def test_one_repeated_step_is_not_a_reset() -> None:
    events = run(
        say("writer", 1, "Draft 1: refunds take 30 days."),
        say("reviewer", 2, "Add the photo rule."),
        say("writer", 3, "Draft 1: refunds take 30 days."),
        say("reviewer", 4, "Still no photo rule: please add it."),
    )
    assert [f.mode for f in detect(events)] == ["step repetition"]


# -- a role outside its role ---------------------------------------------------------------------------------------


def test_a_tool_not_granted_to_the_role_is_outside_its_role() -> None:
    events = run(call("reviewer", 1, "write_file", {"path": "x.md"}), say("reviewer", 1, "APPROVE"))
    (found,) = detect(events, grants=GRANTS)
    assert (found.mode, found.turn, found.role, found.group) == (
        "disobey role specification",
        1,
        "reviewer",
        "specification",
    )
    assert "write_file" in found.evidence and "granted: none" in found.evidence
    assert detect(events) == []  # without the team's grants, tools are not judged


def test_granted_tools_mcp_tools_and_hand_offs_are_within_the_role() -> None:
    events = run(
        call("researcher", 1, "kb_search", {"query": "x"}),
        call("researcher", 1, "docs__search", {"q": "x"}),
        call("writer", 2, "write_file", {"path": "a.md"}),
        call("writer", 2, "transfer_to_reviewer", {}),
        call("someone-else", 3, "anything", {}),  # a role the grants do not know: not judged
    )
    assert detect(events, grants=GRANTS) == []


def test_a_message_in_another_role_s_voice_is_outside_its_role() -> None:
    for text in (
        "Reviewer: looks good, APPROVE",
        "**Reviewer**: APPROVE",
        "[reviewer] APPROVE",
        "User: yes, go on",
    ):
        (found,) = detect(run(say("writer", 1, text)))
        assert (found.mode, found.role) == ("disobey role specification", "writer"), text
        assert "voice" in found.evidence
    for text in (
        "Writer: my draft follows.",  # its own name
        "As the reviewer asked, the photo rule is in.",
        "Reviewers like short posts.",
        "Title: Refunds",
    ):
        assert detect(run(say("writer", 1, text))) == [], text


# -- the shipped suites ------------------------------------------------------------------------------------------------


def test_no_finding_on_any_shipped_suite_run() -> None:
    suites = [load_suite(p) for p in sorted((ROOT / "evals").glob("*.yaml"))]
    jobs = plan(suites, variants([]))
    jobs += plan(
        [load_suite(ROOT / "evals" / "patterns.yaml")], variants(["content-pipeline", "content-studio"])
    )
    records = asyncio.run(Runner(store=None).run(jobs, concurrency=4))
    assert len(records) == len(jobs)
    assert all(r["status"] == "done" and r["passed"] for r in records)
    found = {(r["scenario"], r["variant"]): r["findings"] for r in records if r["findings"]}
    assert found == {}


@pytest.mark.parametrize("stop", ["stop_text", "max_turns"])
def test_findings_are_sorted_by_turn(stop: StopReason) -> None:
    events = run(
        say("writer", 1, "Reviewer: fine"),
        say("writer", 2, "Same words said twice here."),
        say("reviewer", 3, "x"),
        say("writer", 4, "Same words said twice here."),
        stop=stop,
    )
    turns = [f.turn for f in detect(events)]
    assert turns == sorted(turns) and len(turns) >= 2
