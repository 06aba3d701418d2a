"""The projection every adapter reads: what a run's events add up to."""

from __future__ import annotations

from parley.events import (
    AnswerEvent,
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    FileEvent,
    MessageEvent,
    NoteEvent,
    Position,
    QuestionEvent,
    RunResult,
    SubtaskEvent,
    UsageEvent,
)
from parley.projection import Projection


def _usage(
    source: str, prompt: int, completion: int, total: tuple[int, int], cost: float | None
) -> UsageEvent:
    return UsageEvent(
        source=source,
        model="m",
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_prompt_tokens=total[0],
        total_completion_tokens=total[1],
        cost_usd=cost,
    )


def test_what_waits_for_a_human_is_open_until_settled_and_settling_names_what_was_asked() -> None:
    p = Projection()
    request = ApprovalRequestEvent(source="billing", name="refund", arguments={"id": 1}, request_id="r1")
    question = QuestionEvent(
        source="editor", content="For whom?", question_id="q1", timeout_s=None, default=""
    )
    escalation = EscalationEvent(
        source="parley",
        escalation_id="e1",
        kind="tie",
        positions=[Position(who="a", text="yes"), Position(who="b", text="no")],
    )
    for ev in (request, question, escalation):
        assert p.apply(ev) == []
    assert (p.approvals, p.questions, p.escalations) == ([request], [question], [escalation])
    assert list(p.waiting) == ["r1", "q1", "e1"]  # oldest first: the order a human is asked in

    assert p.apply(AnswerEvent(source="dana", content="Small shops", question_id="q1")) == [question]
    assert p.apply(ApprovalDecisionEvent(source="dana", name="refund", request_id="r1", approved=True)) == [
        request
    ]
    assert p.apply(AnswerEvent(source="dana", content="again", question_id="q1")) == []  # settled once only
    assert list(p.waiting) == ["e1"]
    assert p.apply(
        EscalationResolvedEvent(source="dana", escalation_id="e1", decision="choose", choice=2)
    ) == [escalation]
    assert p.waiting == {}


def test_subtasks_track_who_works_on_what_and_the_result_cuts_the_rest_short() -> None:
    p = Projection()
    one = SubtaskEvent(source="lead", subtask_id="s1", worker="writer", task="Draft", status="started")
    two = SubtaskEvent(source="lead", subtask_id="s2", worker="seo", task="Keywords", status="started")
    p.apply(one)
    p.apply(two)
    assert p.working == {"writer": one, "seo": two}
    assert p.apply(one.model_copy(update={"status": "done"})) == [one]
    assert p.working == {"seo": two} and list(p.subtasks) == ["s2"]
    waiting = QuestionEvent(
        source="seo", content="Which market?", question_id="q1", timeout_s=None, default=""
    )
    p.apply(waiting)
    result = RunResult(stop_reason="stopped", turns=1, prompt_tokens=10, completion_tokens=2, cost_usd=None)
    assert p.apply(result) == [waiting, two]
    assert (p.waiting, p.subtasks, p.working, p.result) == ({}, {}, {}, result)


def test_usage_per_speaker_totals_and_files() -> None:
    events = [
        _usage("selector", 40, 1, (40, 1), 0.001),
        _usage("analyst", 100, 20, (140, 21), 0.002),
        MessageEvent(source="analyst", content="Growth", turn=1),
        _usage("analyst", 150, 30, (290, 51), 0.004),
        MessageEvent(source="analyst", content="More", turn=2),
        MessageEvent(source="critic", content="No", turn=3),
        FileEvent(
            source="analyst", name="chart.png", path="/w/chart.png", mime="image/png", size=10, tool="plot"
        ),
        NoteEvent(source="critic", content="Check Q3"),
    ]
    p = Projection.of(events)
    assert p.per_speaker() == [("selector", 40, 1, 0), ("analyst", 250, 50, 2), ("critic", 0, 0, 1)]
    assert (p.prompt_tokens, p.completion_tokens, p.cost_usd) == (290, 51, 0.004)
    assert [f.name for f in p.files] == ["chart.png"] and [n.content for n in p.notes] == ["Check Q3"]
    p.apply(
        RunResult(stop_reason="completed", turns=3, prompt_tokens=290, completion_tokens=51, cost_usd=None)
    )
    assert p.cost_usd is None  # the result's totals are the last word (a price became unknown)
