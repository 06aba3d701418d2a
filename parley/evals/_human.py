"""The scripted human of a scenario: interjections at given turns, and standing answers to approvals,
escalations and questions. It is a `parley.human.HumanPolicy`: the runner applies it with `decide`."""

from __future__ import annotations

from ..events import ApprovalRequestEvent, EscalationEvent, QuestionEvent
from ..human import Answer, Resolution, Verdict
from ..run import Run
from ._suite import ApprovalStep, EscalationStep, HumanStep, QuestionStep, SayStep

ACTOR = "scripted-human"


class ScriptedHuman:
    """Plays a scenario's `human:` steps against a run. `log` says what it did and what it could not answer.

    With `others_answer` (a simulated human stands beside it), a request no step answers gets no decision
    (None) instead of a denial, an open escalation or the default answer: the next policy decides."""

    def __init__(self, steps: list[HumanStep], *, others_answer: bool = False) -> None:
        self.steps = steps
        self.others_answer = others_answer
        self.log: list[str] = []
        self.unanswered: list[str] = []

    def answers(self, ev: ApprovalRequestEvent | QuestionEvent | EscalationEvent) -> bool:
        """Whether a scripted step decides `ev` (it wins over a simulated human)."""
        if isinstance(ev, ApprovalRequestEvent):
            return self._approval_step(ev) is not None
        if isinstance(ev, QuestionEvent):
            return self._question_step(ev) is not None
        return self._escalation_step(ev) is not None

    def _approval_step(self, request: ApprovalRequestEvent) -> ApprovalStep | None:
        server = request.name.partition(".")[0]  # an MCP tool `SERVER.TOOL` is also answered by `SERVER.*`
        wanted = (request.name, "any", f"{server}.*")
        return next((s for s in self.steps if isinstance(s, ApprovalStep) and s.approval in wanted), None)

    def _escalation_step(self, ev: EscalationEvent) -> EscalationStep | None:
        return next(
            (s for s in self.steps if isinstance(s, EscalationStep) and s.escalation in (ev.kind, "any")),
            None,
        )

    def _question_step(self, ev: QuestionEvent) -> QuestionStep | None:
        return next(
            (
                s
                for s in self.steps
                if isinstance(s, QuestionStep)
                and (s.question == "any" or s.question.lower() in ev.content.lower())
            ),
            None,
        )

    def start(self, run: Run) -> None:
        """Schedule the interjections before the team's first turn, so each joins exactly after its turn."""
        for step in self.steps:
            if isinstance(step, SayStep):
                text, mode = (step.say, "say") if step.say is not None else (step.interrupt, "interrupt")
                assert text is not None
                run.say_after(step.at_turn, text, mode=mode)
                self.log.append(f"after turn {step.at_turn}: {mode} {text!r}")

    def approval(self, request: ApprovalRequestEvent) -> Verdict | None:
        step = self._approval_step(request)
        if step is None and self.others_answer:
            return None
        if step is None:
            self.unanswered.append(f"approval of {request.name} (turn {request.turn})")
            verdict = Verdict(False, "the scripted human has no answer for this tool", ACTOR)
        elif step.decision == "approve":
            verdict = Verdict(True, actor=ACTOR)
        else:
            verdict = Verdict(False, step.reason, ACTOR)
        self.log.append(f"turn {request.turn}: {request.name} {'approved' if verdict.approved else 'denied'}")
        return verdict

    def escalation(self, escalation: EscalationEvent) -> Resolution | None:
        ev = escalation
        step = self._escalation_step(ev)
        if step is None and self.others_answer:
            return None
        if step is None:
            self.unanswered.append(f"{ev.kind} escalation (turn {ev.turn})")
            self.log.append(f"turn {ev.turn}: {ev.kind} escalation left open")
            return Resolution(leave_open=True, actor=ACTOR)
        if step.choose is not None and step.choose > len(ev.positions):
            self.unanswered.append(
                f"{ev.kind} escalation (turn {ev.turn}): choose {step.choose}, but there are "
                f"only {len(ev.positions)} positions"
            )
            return Resolution(leave_open=True, actor=ACTOR)
        what = (
            f"chose {step.choose}"
            if step.choose
            else ("continued" if step.continue_ else f"wrote {step.say!r}")
        )
        self.log.append(f"turn {ev.turn}: {ev.kind} escalation: {what}")
        return Resolution(choose=step.choose, text=step.say, proceed=step.continue_, actor=ACTOR)

    def question(self, question: QuestionEvent) -> Answer | None:
        ev = question
        step = self._question_step(ev)
        if step is None and self.others_answer:
            return None
        if step is None:
            self.unanswered.append(f"question {ev.content!r} (turn {ev.turn})")
            return Answer(ev.default, ACTOR)
        self.log.append(f"turn {ev.turn}: answered {ev.content!r} with {step.answer!r}")
        return Answer(step.answer, ACTOR)
