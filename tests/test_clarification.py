"""ask_human: a role asks the human a question; the run waits for the answer or times out with a default."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from _support import collect, team_yaml

from parley import Conversation
from parley.events import AnswerEvent, Event, MessageEvent, QuestionEvent, RunResult, ToolResultEvent

Write = Callable[[str, str], Path]
SAFETY_S = 30.0
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


class _AskingHost:
    """A host whose question is answered only when the test says so."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[AnswerEvent] = asyncio.get_running_loop().create_future()

    def open_question(self, source: str, question: str) -> tuple[QuestionEvent, asyncio.Future[AnswerEvent]]:
        return QuestionEvent(
            source=source, content=question, question_id="q1", timeout_s=None, default=""
        ), self.answer


async def test_the_question_reaches_the_stream_while_the_tool_still_waits_for_its_answer() -> None:
    """The question must be shown before it is answered. AutoGen's stream workbench passes a streamed item on only
    when the next one arrives (shown_now's blank notice pushes it out): if AutoGen changes that, this fails."""
    from autogen_core import CancellationToken
    from autogen_core.tools import StaticStreamWorkbench, ToolResult

    from parley.engine.autogen.agent import ParleyNotice
    from parley.engine.autogen.human import AskHumanTool

    host = _AskingHost()
    bench = StaticStreamWorkbench([AskHumanTool("planner", host)])
    stream = bench.call_tool_stream(
        "ask_human", {"question": "Which region?"}, CancellationToken(), call_id="c1"
    )
    first = await asyncio.wait_for(
        anext(stream), SAFETY_S
    )  # a safety net, not a timing: it comes at once or never
    assert isinstance(first, ParleyNotice) and isinstance(first.event, QuestionEvent)
    assert first.event.content == "Which region?" and not host.answer.done()
    host.answer.set_result(AnswerEvent(source="user", question_id="q1", content="EMEA"))
    rest = [item async for item in stream]
    assert isinstance(rest[-1], ToolResult) and not rest[-1].is_error
    assert rest[-1].to_text() == "The human answered: EMEA"
