"""ask_human: a role asks the human a question; the run waits for the answer or times out with a default."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from _support import collect, team_yaml

from parley import Conversation
from parley.events import AnswerEvent, Event, MessageEvent, QuestionEvent, RunResult, ToolResultEvent

Write = Callable[[str, str], Path]
SCRIPT = """
roles:
  planner:
    - tool: ask_human
      args: {question: "Which region should the plan cover?"}
    - "Plan for the region given."
"""


def _conv(write: Write, extra: str = "") -> Conversation:
    team = write(
        "team.yaml", team_yaml(roles=("planner",), max_turns=1, tools={"planner": ["ask_human"]}, extra=extra)
    )
    return Conversation(team, model=f"scripted:{write('s.yaml', SCRIPT)}")


async def test_the_run_waits_for_the_answer_and_the_role_gets_it(write: Write) -> None:
    conv = _conv(write)
    run = conv.start("Make a sales plan")

    def on_event(ev: Event) -> None:
        if isinstance(ev, QuestionEvent):
            assert run.pending_questions == [ev] and ev.source == "planner"
            run.answer(ev.question_id, "EMEA only", actor="dana")

    events = await collect(run, on_event)
    question = next(e for e in events if isinstance(e, QuestionEvent))
    answer = next(e for e in events if isinstance(e, AnswerEvent))
    assert question.content == "Which region should the plan cover?"
    assert (answer.content, answer.actor, answer.timed_out) == ("EMEA only", "dana", False)
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.name == "ask_human" and result.content == "The human answered: EMEA only"
    assert [m.content for m in events if isinstance(m, MessageEvent)][-1] == "Plan for the region given."
    assert run.pending_questions == []


async def test_an_unanswered_question_times_out_with_the_recorded_default(write: Write) -> None:
    conv = _conv(write, "human: {question_timeout_s: 0.2, default_answer: 'Assume all regions.'}\n")
    events = await collect(conv.start("Make a sales plan"))
    answer = next(e for e in events if isinstance(e, AnswerEvent))
    assert answer.timed_out and answer.content == "Assume all regions." and answer.actor == "parley"
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.content == "(no answer in time) Assume all regions."
    assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "max_turns"


async def test_stopping_while_a_question_waits_records_it_unanswered(write: Write) -> None:
    conv = _conv(write)
    run = conv.start("Make a sales plan")
    events = await collect(run, lambda ev: run.stop() if isinstance(ev, QuestionEvent) else None)
    answer = next(e for e in events if isinstance(e, AnswerEvent))
    assert answer.timed_out and answer.content.startswith("(unanswered: the run ended (stopped))")
    assert events[-1].stop_reason == "stopped"  # type: ignore[union-attr]
