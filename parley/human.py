"""How a human answers what a run asks of them: one protocol, whoever the human is.

A run asks a human three things: to approve a tool call (`ApprovalRequestEvent`), to answer a role's question
(`QuestionEvent`) and to settle an escalation (`EscalationEvent`). A `HumanPolicy` answers each, or says it has
no decision (None): another policy, or a person later, decides. `decide` applies a policy to one event of a
run; `FirstOf` asks several policies in turn.

The implementations: `StandingRules` (the command line's `--approve`/`--deny`, `--answer` and
`--on-escalation`), `NoHuman` (what a run gets when nobody is there: denials, default answers, escalations left
open), the CLI's interactive prompts (parley/cli.py) and the evaluations' scripted human (parley/evals).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from .events import ApprovalRequestEvent, EscalationEvent, Event, QuestionEvent

__all__ = [
    "Answer",
    "Decisions",
    "FirstOf",
    "HumanPolicy",
    "NoHuman",
    "Resolution",
    "StandingRules",
    "Verdict",
    "decide",
    "standing_decision",
]


@dataclass(frozen=True)
class Verdict:
    """A decision on a tool call: approved, or denied with a reason the agent sees."""

    approved: bool
    reason: str = ""
    actor: str = "user"


@dataclass(frozen=True)
class Answer:
    """The answer to a role's question."""

    text: str
    actor: str = "user"


@dataclass(frozen=True)
class Resolution:
    """A decision on an escalation: `choose` a position (1-based), write one's own `text`, let the team `proceed`
    as it is, or `leave_open`: nobody settles it, and the run ends escalated."""

    choose: int | None = None
    text: str | None = None
    proceed: bool = False
    leave_open: bool = False
    actor: str = "user"


class HumanPolicy(Protocol):
    """How a human answers a run. Each method returns the decision, or None for no decision (yet)."""

    def approval(self, request: ApprovalRequestEvent) -> Verdict | None: ...

    def question(self, question: QuestionEvent) -> Answer | None: ...

    def escalation(self, escalation: EscalationEvent) -> Resolution | None: ...


class Decisions(Protocol):
    """What a run offers the human deciding for it (`parley.run.Run` is one)."""

    @property
    def pending_approvals(self) -> list[ApprovalRequestEvent]: ...

    @property
    def pending_questions(self) -> list[QuestionEvent]: ...

    @property
    def pending_escalations(self) -> list[EscalationEvent]: ...

    def approve(self, request_id: str, *, actor: str = "user") -> None: ...

    def deny(self, request_id: str, reason: str = "", *, actor: str = "user") -> None: ...

    def answer(self, question_id: str, text: str, *, actor: str = "user") -> None: ...

    def resolve(
        self,
        escalation_id: str,
        *,
        choose: int | None = None,
        text: str | None = None,
        proceed: bool = False,
        actor: str = "user",
    ) -> None: ...

    def leave_escalated(self) -> None: ...


def decide(policy: HumanPolicy, run: Decisions, ev: Event) -> bool:
    """If `ev` asks a human something still open in `run`, ask `policy` and apply its decision. True if it
    decided; False for any other event, for one decided already (a standing rule in the engine, another page),
    and when the policy has no decision."""
    if isinstance(ev, ApprovalRequestEvent):
        return _approval(policy, run, ev)
    if isinstance(ev, QuestionEvent):
        if not any(q.question_id == ev.question_id for q in run.pending_questions):
            return False
        answer = policy.question(ev)
        if answer is not None:
            run.answer(ev.question_id, answer.text, actor=answer.actor)
        return answer is not None
    if isinstance(ev, EscalationEvent):
        return _escalation(policy, run, ev)
    return False


def _approval(policy: HumanPolicy, run: Decisions, ev: ApprovalRequestEvent) -> bool:
    if not any(r.request_id == ev.request_id for r in run.pending_approvals):
        return False
    verdict = policy.approval(ev)
    if verdict is None:
        return False
    if verdict.approved:
        run.approve(ev.request_id, actor=verdict.actor)
    else:
        run.deny(ev.request_id, verdict.reason, actor=verdict.actor)
    return True


def _escalation(policy: HumanPolicy, run: Decisions, ev: EscalationEvent) -> bool:
    if not any(e.escalation_id == ev.escalation_id for e in run.pending_escalations):
        return False
    resolution = policy.escalation(ev)
    if resolution is None:
        return False
    if resolution.leave_open:
        run.leave_escalated()
    else:
        run.resolve(
            ev.escalation_id,
            choose=resolution.choose,
            text=resolution.text,
            proceed=resolution.proceed,
            actor=resolution.actor,
        )
    return True


class FirstOf:
    """Policies asked in turn: the first one with a decision decides."""

    def __init__(self, *policies: HumanPolicy) -> None:
        self.policies = policies

    def approval(self, request: ApprovalRequestEvent) -> Verdict | None:
        return next((v for p in self.policies if (v := p.approval(request)) is not None), None)

    def question(self, question: QuestionEvent) -> Answer | None:
        return next((a for p in self.policies if (a := p.question(question)) is not None), None)

    def escalation(self, escalation: EscalationEvent) -> Resolution | None:
        return next((r for p in self.policies if (r := p.escalation(escalation)) is not None), None)


def standing_decision(rules: Mapping[str, bool], tool: str) -> bool | None:
    """The standing answer (--approve/--deny) for `tool`: its own name first, then `SERVER.*` for an MCP
    tool named `SERVER.TOOL`, then `*`; None when a human must decide."""
    if tool in rules:
        return rules[tool]
    server, dot, _ = tool.partition(".")
    if dot and f"{server}.*" in rules:
        return rules[f"{server}.*"]
    return rules.get("*")


class StandingRules:
    """Answers decided in advance: approvals by tool (`{tool, SERVER.* or '*': approved}`), one answer to every
    question, and one rule for escalations (`continue` or `choose:N`; `stop` leaves them open)."""

    def __init__(
        self,
        approvals: Mapping[str, bool] | None = None,
        *,
        answer: str | None = None,
        on_escalation: str | None = None,
        actor: str = "policy",
    ) -> None:
        self.approvals = dict(approvals or {})
        self.answer = answer
        self.on_escalation = on_escalation
        self.actor = actor

    def approval(self, request: ApprovalRequestEvent) -> Verdict | None:
        standing = standing_decision(self.approvals, request.name)
        if standing is None:
            return None
        return Verdict(standing, "" if standing else "denied by a standing rule", self.actor)

    def question(self, question: QuestionEvent) -> Answer | None:
        return Answer(self.answer, self.actor) if self.answer else None

    def escalation(self, escalation: EscalationEvent) -> Resolution | None:
        rule = self.on_escalation or ""
        if rule == "continue":
            return Resolution(proceed=True, actor=self.actor)
        if (
            rule.startswith("choose:")
            and rule[7:].isdigit()
            and 1 <= int(rule[7:]) <= len(escalation.positions)
        ):
            return Resolution(choose=int(rule[7:]), actor=self.actor)
        if rule == "stop":
            return Resolution(leave_open=True, actor=self.actor)
        return None


class NoHuman:
    """Nobody is there: tool calls are denied (saying how to allow them), questions get the role's default,
    escalations stay open and the run ends escalated."""

    def __init__(self, actor: str = "cli") -> None:
        self.actor = actor

    def approval(self, request: ApprovalRequestEvent) -> Verdict | None:
        return Verdict(
            False, f"no human at the terminal to approve it (rerun with --approve {request.name})", self.actor
        )

    def question(self, question: QuestionEvent) -> Answer | None:
        return Answer(question.default, self.actor)

    def escalation(self, escalation: EscalationEvent) -> Resolution | None:
        return Resolution(leave_open=True, actor=self.actor)
