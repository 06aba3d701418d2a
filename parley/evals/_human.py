"""The scripted human of a scenario: interjections at given turns, and standing answers to approvals,
escalations and questions. It is a `parley.human.HumanPolicy`: the runner applies it with `decide`."""

from __future__ import annotations

from ..events import ApprovalRequestEvent, EscalationEvent, QuestionEvent
from ..human import Answer, Resolution, Verdict
from ..run import Run
from ._suite import ApprovalStep, EscalationStep, HumanStep, QuestionStep, SayStep

ACTOR = "scripted-human"


class ScriptedHuman:
    """Plays a scenario's `human:` steps against a run. `log` says what it did and what it could not answer."""

    def __init__(self, steps: list[HumanStep]) -> None:
        self.steps = steps
        self.log: list[str] = []
        self.unanswered: list[str] = []

    def start(self, run: Run) -> None:
        """Schedule the interjections before the team's first turn, so each joins exactly after its turn."""
        for step in self.steps:
            if isinstance(step, SayStep):
                text, mode = (step.say, "say") if step.say is not None else (step.interrupt, "interrupt")
                assert text is not None
                run.say_after(step.at_turn, text, mode=mode)
                self.log.append(f"after turn {step.at_turn}: {mode} {text!r}")

    def approval(self, request: ApprovalRequestEvent) -> Verdict:
        server = request.name.partition(".")[0]  # an MCP tool `SERVER.TOOL` is also answered by `SERVER.*`
        wanted = (request.name, "any", f"{server}.*")
        step = next((s for s in self.steps if isinstance(s, ApprovalStep) and s.approval in wanted), None)
        if step is None:
            self.unanswered.append(f"approval of {request.name} (turn {request.turn})")
            verdict = Verdict(False, "the scripted human has no answer for this tool", ACTOR)
        elif step.decision == "approve":
            verdict = Verdict(True, actor=ACTOR)
        else:
            verdict = Verdict(False, step.reason, ACTOR)
        self.log.append(f"turn {request.turn}: {request.name} {'approved' if verdict.approved else 'denied'}")
        return verdict

    def escalation(self, escalation: EscalationEvent) -> Resolution:
        ev = escalation
        step = next(
            (s for s in self.steps if isinstance(s, EscalationStep) and s.escalation in (ev.kind, "any")),
            None,
        )
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

    def question(self, question: QuestionEvent) -> Answer:
        ev = question
        step = next(
            (
                s
                for s in self.steps
                if isinstance(s, QuestionStep)
                and (s.question == "any" or s.question.lower() in ev.content.lower())
            ),
            None,
        )
        if step is None:
            self.unanswered.append(f"question {ev.content!r} (turn {ev.turn})")
            return Answer(ev.default, ACTOR)
        self.log.append(f"turn {ev.turn}: answered {ev.content!r} with {step.answer!r}")
        return Answer(step.answer, ACTOR)
