"""The person at the terminal of `parley run`: prompted for what the run asks, deciding with the lines they type."""

from __future__ import annotations

import asyncio
import os
import sys

from ._render import CALL_CLIP, call_text, visible
from .events import ApprovalRequestEvent, EscalationEvent, QuestionEvent
from .human import Answer, NoHuman, Resolution, StandingRules, Verdict
from .run import Run

__all__ = ["TerminalHuman", "prompt", "read_stdin"]


def whoami() -> str:
    return os.environ.get("USER") or "cli"


class TerminalHuman:
    """The human policy of `parley run`: the person at the terminal is prompted (the line they type decides,
    see `read_stdin`); without one, the command line's standing answers (--answer, --on-escalation) decide, and
    what they leave is denied, answered with the role's default, or left escalated. (--approve and --deny are
    the conversation's own standing rules: those calls are decided before they reach here.)"""

    def __init__(self, run: Run, *, interactive: bool, answer: str | None, on_escalation: str | None) -> None:
        self.run = run
        self.interactive = interactive
        self.on_escalation = on_escalation
        self.rules = StandingRules(answer=answer, on_escalation=on_escalation, actor="cli")
        self.nobody = NoHuman("cli")

    def approval(self, request: ApprovalRequestEvent) -> Verdict | None:
        if not self.interactive:
            return self.nobody.approval(request)
        if first_waiting(self.run) not in (None, request.request_id):
            # A line answers what waits first: this call's prompt comes once that is decided (never twice).
            print(
                f"({visible(request.source, one_line=True)}'s call to {visible(request.name, one_line=True)} "
                "waits its turn: answer the prompt above first)",
                file=sys.stderr,
            )
        else:
            prompt(self.run)
        return None

    def question(self, question: QuestionEvent) -> Answer | None:
        decided = self.rules.question(question)
        if decided is not None or not self.interactive:
            return decided or self.nobody.question(question)
        prompt(self.run)
        return None

    def escalation(self, escalation: EscalationEvent) -> Resolution | None:
        rule = self.on_escalation
        if self.interactive and rule is None:
            prompt(self.run)
            return None
        decided = self.rules.escalation(escalation)
        if decided is None or decided.leave_open:
            why = (
                "no human at the terminal"
                if not rule or rule == "stop"
                else f"{rule} is not one of the positions"
            )
            print(
                f"parley: {why}; the escalation stays open (rerun with --on-escalation continue|choose:N)",
                file=sys.stderr,
            )
            return self.nobody.escalation(escalation)
        return decided


def prompt(run: Run) -> None:
    """Say what the next line typed decides: the first escalation, else the first question, else the first
    approval waiting (the order `read_stdin` answers them in), whatever event was shown last. An approval's
    prompt repeats the tool and its arguments, made visible, so what `y` approves is what the prompt shows
    even if a model's text above it was made to look like another request."""
    if run.pending_escalations:
        esc = run.pending_escalations[0]
        print(
            f"settle it: type 1-{len(esc.positions)} to pick a position, c to let the team continue, "
            "or write your own answer",
            file=sys.stderr,
        )
    elif run.pending_questions:
        print(
            f"type your answer to {visible(run.pending_questions[0].source, one_line=True)}'s question and Enter",
            file=sys.stderr,
        )
    elif run.pending_approvals:
        req = run.pending_approvals[0]
        more = len(run.pending_approvals) - 1
        print(
            f"approve {visible(req.source, one_line=True)}'s call to {call_text(req.name, req.arguments, clip=CALL_CLIP)}"
            f"? type y to approve, anything else denies (your text is the reason)"
            + (f" · {more} more waiting after it" if more else ""),
            file=sys.stderr,
        )


def first_waiting(run: Run) -> str | None:
    """The id of what the next line typed answers (see `prompt`), or None when nothing waits."""
    if run.pending_escalations:
        return run.pending_escalations[0].escalation_id
    if run.pending_questions:
        return run.pending_questions[0].question_id
    return run.pending_approvals[0].request_id if run.pending_approvals else None


def read_stdin(loop: asyncio.AbstractEventLoop, run: Run) -> None:
    def on_line() -> None:
        line = sys.stdin.readline()
        if not line:
            loop.remove_reader(sys.stdin.fileno())
            return
        text = line.strip()
        if not text or run.result is not None:
            return
        escalations, questions, waiting = (
            run.pending_escalations,
            run.pending_questions,
            run.pending_approvals,
        )
        who = whoami()
        if escalations or questions or waiting:
            if escalations:
                settle(run, escalations[0], text, who)
            elif questions:
                run.answer(questions[0].question_id, text, actor=who)
            elif text.lower() in ("y", "yes"):
                run.approve(waiting[0].request_id, actor=os.environ.get("USER", "cli"))
            else:
                run.deny(
                    waiting[0].request_id,
                    "" if text.lower() in ("n", "no") else text,
                    actor=os.environ.get("USER", "cli"),
                )
            prompt(
                run
            )  # the next thing waiting, if any: the last prompt on screen is always the one a line answers
        elif text in ("/stop", "/quit"):
            run.stop()
        elif text.startswith(("/i ", "/interrupt ")):
            run.interrupt(text.split(" ", 1)[1])
        else:
            run.say(text)

    loop.add_reader(sys.stdin.fileno(), on_line)


def settle(run: Run, esc: EscalationEvent, text: str, who: str) -> None:
    if text.isdigit() and 1 <= int(text) <= len(esc.positions):
        run.resolve(esc.escalation_id, choose=int(text), actor=who)
    elif text.lower() in ("c", "continue"):
        run.resolve(esc.escalation_id, proceed=True, actor=who)
    else:
        run.resolve(esc.escalation_id, text=text, actor=who)
