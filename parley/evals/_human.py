"""The scripted human of a scenario: interjections at given turns, and standing answers to approvals,
escalations and questions."""

from __future__ import annotations

from ..events import ApprovalRequestEvent, EscalationEvent, Event, QuestionEvent
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

    def on_event(self, run: Run, ev: Event) -> None:
        if isinstance(ev, ApprovalRequestEvent):
            self._approval(run, ev)
        elif isinstance(ev, EscalationEvent):
            self._escalation(run, ev)
        elif isinstance(ev, QuestionEvent):
            self._question(run, ev)

    def _approval(self, run: Run, ev: ApprovalRequestEvent) -> None:
        server = ev.name.partition(".")[0]  # an MCP tool `SERVER.TOOL` is also answered by `SERVER.*`
        step = next(
            (
                s
                for s in self.steps
                if isinstance(s, ApprovalStep) and s.approval in (ev.name, "any", f"{server}.*")
            ),
            None,
        )
        if step is None:
            self.unanswered.append(f"approval of {ev.name} (turn {ev.turn})")
            run.deny(ev.request_id, "the scripted human has no answer for this tool", actor=ACTOR)
        elif step.decision == "approve":
            run.approve(ev.request_id, actor=ACTOR)
        else:
            run.deny(ev.request_id, step.reason, actor=ACTOR)
        self.log.append(
            f"turn {ev.turn}: {ev.name} {'approved' if step and step.decision == 'approve' else 'denied'}"
        )

    def _escalation(self, run: Run, ev: EscalationEvent) -> None:
        step = next(
            (s for s in self.steps if isinstance(s, EscalationStep) and s.escalation in (ev.kind, "any")),
            None,
        )
        if step is None:
            self.unanswered.append(f"{ev.kind} escalation (turn {ev.turn})")
            self.log.append(f"turn {ev.turn}: {ev.kind} escalation left open")
            run.leave_escalated()
            return
        if step.choose is not None and step.choose > len(ev.positions):
            self.unanswered.append(
                f"{ev.kind} escalation (turn {ev.turn}): choose {step.choose}, but there are "
                f"only {len(ev.positions)} positions"
            )
            run.leave_escalated()
            return
        run.resolve(ev.escalation_id, choose=step.choose, text=step.say, proceed=step.continue_, actor=ACTOR)
        what = (
            f"chose {step.choose}"
            if step.choose
            else ("continued" if step.continue_ else f"wrote {step.say!r}")
        )
        self.log.append(f"turn {ev.turn}: {ev.kind} escalation: {what}")

    def _question(self, run: Run, ev: QuestionEvent) -> None:
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
            run.answer(ev.question_id, ev.default, actor=ACTOR)
            return
        run.answer(ev.question_id, step.answer, actor=ACTOR)
        self.log.append(f"turn {ev.turn}: answered {ev.content!r} with {step.answer!r}")
