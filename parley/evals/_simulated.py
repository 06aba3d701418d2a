"""The simulated human of a scenario: a model playing a person with a goal, a persona and facts they know.

It answers the roles' questions, approvals and escalations that no scripted step answers (a scripted step wins),
and after each agent turn it is asked, with a strict one-word answer, whether the conversation still heads for
its goal; when it drifts, the person writes a message to steer it back (at most `max_messages`). Its calls run
on a model pool and meter of their own: its tokens are reported apart from the team's.

`ScenarioHuman` is what the runner drives: the scripted steps and the simulated human together, one
`parley.human.HumanPolicy` (`FirstOf`), applied to each event of a run with `observe`.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

from ..errors import ScriptExhaustedError
from ..events import (
    ApprovalRequestEvent,
    EscalationEvent,
    Event,
    HumanMessageEvent,
    MessageEvent,
    QuestionEvent,
)
from ..human import Answer, FirstOf, HumanPolicy, Resolution, Verdict, decide
from ..run import Run
from ._expect import Outcome
from ._human import ScriptedHuman
from ._suite import Scenario, Simulation

__all__ = ["ACTOR", "CHECK", "WHO", "ScenarioHuman", "SimulatedHuman", "read_choice"]

ACTOR = "simulated-human"
"""Who the audit trail says decided."""
WHO, CHECK = "human", "human_check"
"""The names its model calls are metered under, and a scripted simulator's lists of replies (`roles: human:`,
`roles: human_check:`): what the person writes (answers, decisions, messages), and its drift verdicts, one after
each agent turn. A script whose verdicts run out leaves the conversation be from then on."""
ON_TRACK, DRIFT = "on_track", "drift"
TAIL = 12
"""The last messages the person is shown before each answer."""
CLIP = 1500

Pending = ApprovalRequestEvent | QuestionEvent | EscalationEvent


class SimulatedHuman:
    """A model playing the scenario's person. `prepare` asks the model (async) and keeps the answer; the
    policy methods hand it over when `decide` asks, so the run gets it as it gets any human's."""

    def __init__(self, sim: Simulation, task: str) -> None:
        from ..engine.autogen.models import ModelPool
        from ..models import Meter

        self.sim = sim
        self.task = task
        self.pool = ModelPool(Meter())
        self.said: list[dict[str, Any]] = []
        """Its own messages: the turn after which it wrote each, its text, and the turn after which it joined
        the conversation (None: it never did; the run ended first)."""
        self.log: list[str] = []
        self.problems: list[str] = []
        """What it could not do (its model failed, an answer it could not read): the scenario fails."""
        self._ready: dict[str, Verdict | Answer | Resolution] = {}
        self._heard: list[str] = [f"task (you gave it): {task[:CLIP]}"]
        self._broken = False
        """Its model failed on something the run waited for: it answers nothing more."""
        self._checks_over = False
        """No more drift checks: its model failed on one, or its script has no more verdicts."""

    # -- what it is told ----------------------------------------------------------------------

    def _system(self) -> str:
        sim = self.sim
        facts = "\n".join(f"- {k}: {v}" for k, v in sim.knows.items()) or "- (nothing beyond your goal)"
        return (
            "You play a person talking with a team of AI agents. Stay in character; never say you are an AI.\n"
            f"Your goal: {sim.goal}\n"
            + (f"Who you are: {sim.persona}\n" if sim.persona else "")
            + "What you "
            f"know (give it when asked; say you do not know anything else, never invent it):\n{facts}"
        )

    def _context(self) -> str:
        return "The conversation so far (latest last):\n" + "\n".join(self._heard[-TAIL:])

    def hear(self, ev: Event) -> None:
        """Keep the conversation's messages (the person's view of it)."""
        if isinstance(ev, MessageEvent):
            self._heard.append(f"[turn {ev.turn}] {ev.source}: {ev.content[:CLIP]}")
        elif isinstance(ev, HumanMessageEvent) and ev.mode != "task":
            self._heard.append(f"[turn {ev.turn}] you: {ev.content[:CLIP]}")
            if ev.author == ACTOR:
                self._delivered(ev)

    # -- its model ------------------------------------------------------------------------------

    async def _ask(self, ask: str, who: str = WHO) -> str:
        user = f"{self._context()}\n\n{ask}"
        reply = await self.pool.text(self.sim.model, who, system=self._system(), user=user)
        return reply.strip()[:CLIP]

    async def _text(self, ask: str) -> str | None:
        """What the person writes for something the run waits for; None when its model failed (reported)."""
        if self._broken:
            return None
        try:
            return await self._ask(ask)
        except Exception as exc:  # the scenario's failure, reported; never the evaluation's crash
            self._broken = True
            self.problems.append(f"its model ({self.sim.model}) failed: {str(exc)[:300]}")
            return None

    @staticmethod
    def _read(reply: str | None, choices: list[str]) -> tuple[str | None, str]:
        """A strict short answer, read defensively (`read_choice`): the choice, or None with the text it gave."""
        if reply is None:
            return None, ""
        return read_choice(reply, choices), reply

    @staticmethod
    def _strictly(ask: str, choices: list[str]) -> str:
        return f"{ask}\nAnswer with exactly one word: {' or '.join(choices)}."

    # -- answers the run waits for --------------------------------------------------------------

    async def prepare(self, ev: Pending) -> None:
        """Ask the model for its answer to `ev`; a request it cannot answer gets what nobody there would give."""
        if isinstance(ev, QuestionEvent):
            self._ready[ev.question_id] = await self._answer(ev)
        elif isinstance(ev, ApprovalRequestEvent):
            self._ready[ev.request_id] = await self._verdict(ev)
        else:
            self._ready[ev.escalation_id] = await self._resolution(ev)

    async def _answer(self, ev: QuestionEvent) -> Answer:
        text = await self._text(f"{ev.source} asks you: {ev.content[:CLIP]}\nReply with your answer only.")
        if not text:
            self.problems.append(f"question {ev.content[:200]!r} (turn {ev.turn}) got no answer")
            return Answer(ev.default, ACTOR)
        self.log.append(f"turn {ev.turn}: answered {ev.content[:200]!r} with {text[:200]!r}")
        self._heard.append(f"[turn {ev.turn}] you (answering {ev.source}): {text}")
        return Answer(text, ACTOR)

    async def _verdict(self, ev: ApprovalRequestEvent) -> Verdict:
        ask = (
            f"{ev.source} wants to run the tool {ev.name} with {str(ev.arguments)[:CLIP]}. "
            "Do you approve it, as the person you are?"
        )
        choices = ["approve", "deny"]
        choice, said = self._read(await self._text(self._strictly(ask, choices)), choices)
        if choice is None:
            self.problems.append(f"approval of {ev.name} (turn {ev.turn}): unreadable answer {said[:200]!r}")
            choice = "deny"
        self.log.append(f"turn {ev.turn}: {ev.name} {'approved' if choice == 'approve' else 'denied'}")
        return Verdict(choice == "approve", "" if choice == "approve" else "the person said no", ACTOR)

    async def _resolution(self, ev: EscalationEvent) -> Resolution:
        numbers = [str(i) for i in range(1, len(ev.positions) + 1)]
        listed = "\n".join(
            f"{n}. {p.who}: {p.text[:400]}" for n, p in zip(numbers, ev.positions, strict=True)
        )
        ask = self._strictly(
            f"The team cannot agree ({ev.kind}). Which position do you take?\n{listed}", numbers
        )
        choice, said = self._read(await self._text(ask), numbers) if numbers else (None, "")
        if choice is None:
            self.problems.append(f"{ev.kind} escalation (turn {ev.turn}) left open: answer {said[:200]!r}")
            return Resolution(leave_open=True, actor=ACTOR)
        self.log.append(f"turn {ev.turn}: {ev.kind} escalation: chose {choice}")
        return Resolution(choose=int(choice), actor=ACTOR)

    def approval(self, request: ApprovalRequestEvent) -> Verdict | None:
        found = self._ready.pop(request.request_id, None)
        return found if isinstance(found, Verdict) else None

    def question(self, question: QuestionEvent) -> Answer | None:
        found = self._ready.pop(question.question_id, None)
        return found if isinstance(found, Answer) else None

    def escalation(self, escalation: EscalationEvent) -> Resolution | None:
        found = self._ready.pop(escalation.escalation_id, None)
        return found if isinstance(found, Resolution) else None

    # -- stepping in --------------------------------------------------------------------------------

    async def after_turn(self, run: Run, ev: MessageEvent) -> None:
        """Asked after each agent turn while it may still write: has the conversation drifted from the goal?
        A failed check is a note, not the scenario's failure: the run waited for nothing."""
        if len(self.said) >= self.sim.max_messages or self._broken or self._checks_over:
            return
        choices = [ON_TRACK, DRIFT]
        ask = "Is the team still working toward your goal, or has the conversation drifted from it?"
        try:
            choice, said = self._read(await self._ask(self._strictly(ask, choices), CHECK), choices)
            if choice == DRIFT:
                said = await self._ask("The conversation drifted from your goal. Write your next message.")
        except ScriptExhaustedError:
            self._checks_over = True  # a scripted person with nothing more to say
            return
        except Exception as exc:  # its model: noted, and no more checks
            self._checks_over = True
            self.log.append(f"after turn {ev.turn}: drift check failed ({str(exc)[:200]}); no more checks")
            return
        if choice is None:
            self.log.append(f"after turn {ev.turn}: drift check answer unreadable ({said[:120]!r}): on track")
        if choice != DRIFT or not said:
            return
        run.say(said, author=ACTOR)
        self.said.append({"turn": ev.turn, "text": said, "delivered": False, "joined_after_turn": None})
        self.log.append(f"after turn {ev.turn}: said {said[:200]!r} (the conversation drifted)")

    def _delivered(self, ev: HumanMessageEvent) -> None:
        """One of its messages joined the conversation."""
        for m in self.said:
            if not m["delivered"] and m["text"] == ev.content:
                m["delivered"], m["joined_after_turn"] = True, ev.turn
                return

    def usage(self) -> dict[str, Any]:
        meter = self.pool.meter
        return {
            "model": self.sim.model,
            "goal": self.sim.goal,
            "messages": list(self.said),
            "calls": len(meter.calls),
            "prompt_tokens": meter.prompt_tokens,
            "completion_tokens": meter.completion_tokens,
            "total_tokens": meter.prompt_tokens + meter.completion_tokens,
            "cost_usd": meter.cost_usd,
        }


class ScenarioHuman:
    """A scenario's human as the runner drives it: its scripted steps, and its simulated human if it has one."""

    def __init__(self, sc: Scenario) -> None:
        sim = sc.simulation
        self.scripted = ScriptedHuman(list(sc.human), others_answer=sim is not None)
        self.simulated = SimulatedHuman(sim, sc.task) if sim is not None else None
        self.policy: HumanPolicy = (
            self.scripted if self.simulated is None else FirstOf(self.scripted, self.simulated)
        )

    def start(self, run: Run) -> None:
        self.scripted.start(run)

    async def observe(self, run: Run, ev: Event) -> None:
        """Answer what `ev` asks of the human (the scripted step first), and let the simulated human step in."""
        sim = self.simulated
        if sim is not None:
            sim.hear(ev)
            if isinstance(ev, Pending) and _pending(run, ev) and not self.scripted.answers(ev):
                await sim.prepare(ev)
        decide(self.policy, run, ev)
        if sim is None:
            return
        if (
            isinstance(ev, MessageEvent)
            and ev.source in run.conversation.team.role_names
            and run.result is None
        ):
            await sim.after_turn(run, ev)

    async def close(self) -> None:
        """Close the simulated human's model clients (its meter stays readable): when the run ended, or failed."""
        if self.simulated is not None:
            await self.simulated.pool.close()

    @property
    def log(self) -> list[str]:
        return self.scripted.log + (self.simulated.log if self.simulated else [])

    @property
    def unanswered(self) -> list[str]:
        return self.scripted.unanswered

    def outcomes(self) -> list[Outcome]:
        """A failed check for each request the scripted steps had no answer for, and for what the simulated
        human could not do."""
        out: list[Outcome] = []
        if self.scripted.unanswered:
            out.append(
                Outcome(
                    "scripted_human",
                    self.scripted.unanswered,
                    "failed",
                    "the scripted human had no answer for: " + "; ".join(self.scripted.unanswered),
                )
            )
        if self.simulated is not None and self.simulated.problems:
            out.append(
                Outcome(
                    "simulated_human",
                    self.simulated.problems,
                    "failed",
                    "the simulated human could not answer: " + "; ".join(self.simulated.problems),
                )
            )
        return out

    def record(self) -> dict[str, Any]:
        """What a scenario run's record says of its simulated human (None without one): its model, goal,
        messages, calls and tokens, apart from the team's."""
        return {"simulated_human": self.simulated.usage() if self.simulated else None}


def read_choice(text: str, choices: list[str]) -> str | None:
    """The one choice an answer names: `{"answer": CHOICE}`, or exactly one of the choices as a word
    (case aside; "on track" is on_track). None when it names none, or more than one ("on_track, not drift")."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and cast(dict[str, Any], data).get("answer") in choices:
        return str(cast(dict[str, Any], data)["answer"])
    said = re.sub(r"\bon[\s-]+track\b", ON_TRACK, text.lower())
    named = [c for c in choices if re.search(rf"(?<![\w.]){re.escape(c.lower())}(?![\w]|\.\d)", said)]
    return named[0] if len(named) == 1 else None


def _pending(run: Run, ev: Pending) -> bool:
    if isinstance(ev, ApprovalRequestEvent):
        return any(r.request_id == ev.request_id for r in run.pending_approvals)
    if isinstance(ev, QuestionEvent):
        return any(q.question_id == ev.question_id for q in run.pending_questions)
    return any(e.escalation_id == ev.escalation_id for e in run.pending_escalations)
