"""One human policy: standing rules, nobody there, and policies asked in turn, applied to what a run asks."""

from __future__ import annotations

from typing import Any

from parley.events import ApprovalRequestEvent, EscalationEvent, MessageEvent, Position, QuestionEvent
from parley.human import (
    Answer,
    FirstOf,
    NoHuman,
    Resolution,
    StandingRules,
    Verdict,
    decide,
    standing_decision,
)


class _Run:
    """What a run offers the human, recording each decision."""

    def __init__(self, *waiting: Any) -> None:
        self.waiting = list(waiting)
        self.done: list[tuple[Any, ...]] = []

    @property
    def pending_approvals(self) -> list[ApprovalRequestEvent]:
        return [w for w in self.waiting if isinstance(w, ApprovalRequestEvent)]

    @property
    def pending_questions(self) -> list[QuestionEvent]:
        return [w for w in self.waiting if isinstance(w, QuestionEvent)]

    @property
    def pending_escalations(self) -> list[EscalationEvent]:
        return [w for w in self.waiting if isinstance(w, EscalationEvent)]

    def approve(self, request_id: str, *, actor: str = "user") -> None:
        self.done.append(("approve", request_id, actor))

    def deny(self, request_id: str, reason: str = "", *, actor: str = "user") -> None:
        self.done.append(("deny", request_id, reason, actor))

    def answer(self, question_id: str, text: str, *, actor: str = "user") -> None:
        self.done.append(("answer", question_id, text, actor))

    def resolve(
        self,
        escalation_id: str,
        *,
        choose: int | None = None,
        text: str | None = None,
        proceed: bool = False,
        actor: str = "user",
    ) -> None:
        self.done.append(("resolve", escalation_id, choose, text, proceed, actor))

    def leave_escalated(self) -> None:
        self.done.append(("leave",))


REQUEST = ApprovalRequestEvent(source="ops", name="fs.delete", arguments={"path": "/tmp/x"}, request_id="r1")
QUESTION = QuestionEvent(
    source="editor", content="For whom?", question_id="q1", timeout_s=None, default="anyone"
)
ESCALATION = EscalationEvent(
    source="parley",
    escalation_id="e1",
    kind="tie",
    positions=[Position(who="a", text="yes"), Position(who="b", text="no")],
)


def test_standing_rules_answer_by_tool_server_then_everything() -> None:
    rules = {"fs.*": False, "fs.read": True, "*": True}
    assert [standing_decision(rules, t) for t in ("fs.read", "fs.delete", "web.fetch")] == [True, False, True]
    assert standing_decision({"fs.read": True}, "fs.delete") is None

    run = _Run(REQUEST, QUESTION, ESCALATION)
    policy = StandingRules({"fs.*": False}, answer="small shops", on_escalation="choose:2", actor="cli")
    assert all(decide(policy, run, ev) for ev in (REQUEST, QUESTION, ESCALATION))
    assert run.done == [
        ("deny", "r1", "denied by a standing rule", "cli"),
        ("answer", "q1", "small shops", "cli"),
        ("resolve", "e1", 2, None, False, "cli"),
    ]


def test_no_decision_leaves_it_to_the_next_policy_and_nobody_there_ends_it() -> None:
    run = _Run(REQUEST, QUESTION, ESCALATION)
    policy = FirstOf(StandingRules(on_escalation="choose:3"), NoHuman())  # only two positions: no decision
    assert StandingRules().approval(REQUEST) is None and StandingRules().question(QUESTION) is None
    assert all(decide(policy, run, ev) for ev in (REQUEST, QUESTION, ESCALATION))
    assert run.done[0][:2] == ("deny", "r1") and "--approve fs.delete" in run.done[0][2]
    assert run.done[1:] == [("answer", "q1", "anyone", "cli"), ("leave",)]


def test_only_what_is_still_open_is_decided() -> None:
    class Eager:
        def approval(self, request: ApprovalRequestEvent) -> Verdict | None:
            return Verdict(True, actor="dana")

        def question(self, question: QuestionEvent) -> Answer | None:
            return Answer("now", actor="dana")

        def escalation(self, escalation: EscalationEvent) -> Resolution | None:
            return Resolution(proceed=True, actor="dana")

    settled = _Run()  # decided already (a standing rule in the engine, another page)
    assert not any(decide(Eager(), settled, ev) for ev in (REQUEST, QUESTION, ESCALATION))
    assert not decide(Eager(), _Run(REQUEST), MessageEvent(source="ops", content="hi"))
    assert settled.done == []
    run = _Run(ESCALATION)
    assert decide(Eager(), run, ESCALATION) and run.done == [("resolve", "e1", None, None, True, "dana")]
