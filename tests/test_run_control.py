"""say / interrupt / stop through the public API, with the scripted model. No sleeps: wait on events."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _support import collect, team_yaml
from autogen_core.models import UserMessage

from parley import Conversation
from parley.events import ChunkEvent, Event, HumanMessageEvent, MessageEvent, RunResult, TurnAbandonedEvent

Write = Callable[[str, str], Path]


def _conv(write: Write, script: str, **team_kw: object) -> Conversation:
    team = write("team.yaml", team_yaml(**team_kw))  # type: ignore[arg-type]
    path = write("script.yaml", script)
    return Conversation(team, model=f"scripted:{path}")


def _said(conv: Conversation, role: str, call: int) -> list[str]:
    """Texts of the user messages the role's `call`-th model call received (1-based)."""
    calls = [c for c in conv.pool.scripts[0].calls if c.who == role]
    return [
        m.content
        for m in calls[call - 1].messages
        if isinstance(m, UserMessage) and isinstance(m.content, str)
    ]


async def test_say_joins_after_current_turn_in_order(write: Write) -> None:
    conv = _conv(
        write,
        """
        roles:
          alpha: ["Alpha one speaks at some length here", "Alpha two"]
          beta: ["Beta one", "Beta two"]
        delay_s: 0.2
    """,
        max_turns=4,
    )
    run = conv.start("Plan the launch")
    sent = False

    def on_event(ev: Event) -> None:
        nonlocal sent
        if isinstance(ev, ChunkEvent) and ev.source == "alpha" and not sent:
            sent = True
            run.say("focus on EMEA")
            run.say("and keep it short")

    events = await collect(run, on_event)
    order = [(e.type, e.source, e.content) for e in events if isinstance(e, MessageEvent | HumanMessageEvent)]
    assert order == [
        ("human_message", "user", "Plan the launch"),
        ("message", "alpha", "Alpha one speaks at some length here"),
        ("human_message", "user", "focus on EMEA"),
        ("human_message", "user", "and keep it short"),
        ("message", "beta", "Beta one"),
        ("message", "alpha", "Alpha two"),
        ("message", "beta", "Beta two"),
    ]
    # The next speaker's model call saw both interjections, in order, after the task.
    seen = "\n".join(_said(conv, "beta", 1))
    assert seen.index("Plan the launch") < seen.index("focus on EMEA") < seen.index("and keep it short")
    assert events[-1].stop_reason == "max_turns"  # type: ignore[union-attr]
    assert events[-1].turns == 4  # type: ignore[union-attr]


async def test_interrupt_abandons_current_call_and_continues(write: Write) -> None:
    conv = _conv(
        write,
        """
        roles:
          alpha: ["One two three four five six seven eight nine ten", "Alpha after the interrupt"]
          beta: ["Beta answers"]
        delay_s: 1.0
    """,
        max_turns=2,
    )
    run = conv.start("Write the summary")
    chunks = 0

    def on_event(ev: Event) -> None:
        nonlocal chunks
        if isinstance(ev, ChunkEvent) and ev.source == "alpha":
            chunks += 1
            if chunks == 2:
                run.interrupt("Stop, use EMEA figures only")

    events = await collect(run, on_event)
    abandoned = [e for e in events if isinstance(e, TurnAbandonedEvent)]
    assert len(abandoned) == 1 and abandoned[0].source == "alpha" and abandoned[0].reason == "interrupt"
    assert "One two" in abandoned[0].content and "ten" not in abandoned[0].content  # cut mid-reply
    messages = [(e.source, e.content) for e in events if isinstance(e, MessageEvent)]
    assert messages == [("alpha", "Alpha after the interrupt"), ("beta", "Beta answers")]
    assert [e.mode for e in events if isinstance(e, HumanMessageEvent)] == ["task", "interrupt"]
    # The rebuilt team still knows the task, and sees the interruption; the abandoned text is gone.
    seen = _said(conv, "alpha", 2)
    assert "Write the summary" in seen and "Stop, use EMEA figures only" in seen
    assert all("One two three" not in s for s in seen)
    assert events[-1].stop_reason == "max_turns"  # type: ignore[union-attr]


async def test_stop_ends_now_and_conversation_continues(write: Write) -> None:
    conv = _conv(
        write,
        """
        roles:
          alpha: ["Alpha finished its turn", "Alpha resumes"]
          beta: ["Beta is halfway through a long answer when", "Beta after resume. DONE"]
        delay_s: 0.5
    """,
        max_turns=6,
        stop_text="DONE",
        stop_from=("beta",),
    )
    run = conv.start("Draft it")
    calls_at_stop = -1

    def on_event(ev: Event) -> None:
        nonlocal calls_at_stop
        if isinstance(ev, ChunkEvent) and ev.source == "beta" and calls_at_stop < 0:
            calls_at_stop = len(conv.meter.calls) + 1  # beta's call is in flight, not yet recorded
            run.stop()

    events = await collect(run, on_event)
    result = events[-1]
    assert isinstance(result, RunResult)
    assert result.stop_reason == "stopped" and result.turns == 1
    assert not result.ok
    assert [e.source for e in events if isinstance(e, TurnAbandonedEvent)] == ["beta"]
    assert len(conv.pool.scripts[0].calls) == calls_at_stop  # no model call after stop
    # Continue the same conversation: the team holds exactly what the user saw.
    run2 = conv.start("Carry on, briefly")
    events2 = await collect(run2, lambda ev: None)
    msgs = [(e.source, e.content) for e in events2 if isinstance(e, MessageEvent)]
    assert msgs == [("beta", "Beta after resume. DONE")]
    assert events2[-1].stop_reason == "stop_text"  # type: ignore[union-attr]
    seen = _said(conv, "beta", 2)
    assert "Draft it" in seen and "Carry on, briefly" in seen
    history = [m for c in conv.pool.scripts[0].calls if c.who == "beta" for m in c.messages]
    assert all("halfway" not in str(m.content) for m in history)
    assert next(e.turn for e in events2 if isinstance(e, MessageEvent)) == 2


async def test_message_typed_too_late_is_kept_for_next_run(write: Write) -> None:
    conv = _conv(
        write,
        """
        roles:
          alpha: ["Only turn", "Second run reply"]
        delay_s: 0.2
    """,
        roles=("alpha",),
        max_turns=1,
    )
    run = conv.start("Go")
    said = False

    def on_event(ev: Event) -> None:
        nonlocal said
        if isinstance(ev, ChunkEvent) and not said:
            said = True
            run.say("one more thing")

    events = await collect(run, on_event)
    result = events[-1]
    assert isinstance(result, RunResult)
    assert result.stop_reason == "max_turns" and result.undelivered == ["one more thing"]
    events2 = await collect(conv.start("next task"), lambda ev: None)
    delivered = [e.content for e in events2 if isinstance(e, HumanMessageEvent)]
    assert delivered == ["one more thing", "next task"]


async def test_timeout_cancels_a_model_that_is_still_generating(write: Write) -> None:
    team = write("team.yaml", team_yaml(max_turns=5) + "  timeout_s: 0.3\n")
    script = write(
        "script.yaml",
        """
        roles:
          alpha: ["this reply would take a full minute to stream out"]
        delay_s: 60
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Go"), lambda ev: None)
    result = events[-1]
    assert isinstance(result, RunResult)
    assert result.stop_reason == "timeout" and result.turns == 0
    assert "0.3 s" in result.detail


async def test_token_budget_stops_the_run_and_no_call_is_made_past_it(write: Write) -> None:
    long = "word " * 60
    team = write("team.yaml", team_yaml("selector", max_turns=20))
    script = write(
        "script.yaml",
        f"""
        roles:
          alpha: ["{long}", "{long}", "{long}", "{long}"]
          beta: ["{long}", "{long}", "{long}", "{long}"]
        selector: [alpha, beta, alpha, beta, alpha, beta, alpha, beta]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}", max_tokens=600)
    events = await collect(conv.start("Go"), lambda ev: None)
    result = events[-1]
    assert isinstance(result, RunResult)
    assert result.stop_reason == "max_tokens"
    assert result.prompt_tokens + result.completion_tokens >= 600
    totals = 0
    for call in conv.meter.calls:  # every call began while the budget still had room
        assert totals < 600
        totals += call.prompt_tokens + call.completion_tokens
    assert {c.source for c in conv.meter.calls} >= {"selector", "alpha"}


async def test_script_running_out_is_an_error_naming_role_and_turn(write: Write) -> None:
    conv = _conv(
        write,
        """
        roles:
          alpha: ["first"]
          beta: ["second"]
    """,
        max_turns=4,
    )
    events = await collect(conv.start("Go"), lambda ev: None)
    result = events[-1]
    assert isinstance(result, RunResult)
    assert result.stop_reason == "error"
    assert "ScriptExhaustedError" in result.detail
    assert "alpha ran past the end of its script at its turn 2" in result.detail


async def test_stop_during_a_tool_that_never_returns(write: Write) -> None:
    import asyncio

    from parley import ToolRegistry
    from parley.events import ToolCallEvent

    write(
        "slow/hang.py",
        '''
        import asyncio
        from parley.tools import tool

        @tool
        async def wait_forever(x: int) -> str:
            """Never returns."""
            await asyncio.Event().wait()
            return "unreachable"
    ''',
    )
    registry = ToolRegistry.discover([write("slow/_x.py", "").parent])
    team = write("team.yaml", team_yaml(roles=("alpha",), tools={"alpha": ["wait_forever"]}))
    script = write(
        "script.yaml", "roles:\n  alpha:\n    - tool: wait_forever\n      args: {x: 1}\n    - after\n"
    )
    conv = Conversation(team, model=f"scripted:{script}", registry=registry)
    run = conv.start("Go")

    def on_event(ev: Event) -> None:
        if isinstance(ev, ToolCallEvent):
            run.stop()

    events = await asyncio.wait_for(collect(run, on_event), 30)  # a hang guard, not a speed check
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "stopped"
    assert [c.who for c in conv.pool.scripts[0].calls] == ["alpha"]  # no model call after the stop


async def test_a_failed_run_says_which_role_failed_at_which_turn_and_why() -> None:
    from parley import FunctionModel, ModelRequest, RunError, TeamSpec

    def flaky(request: ModelRequest) -> str:
        if request.who == "beta":
            raise ValueError("the upstream service refused the request")
        return "alpha's part"

    conv = Conversation(
        TeamSpec.model_validate(
            {
                "name": "pair",
                "pattern": "round_robin",
                "roles": [
                    {"name": "alpha", "prompt": "You are alpha."},
                    {"name": "beta", "prompt": "You are beta."},
                ],
                "termination": {"max_turns": 4},
            }
        ),
        model=FunctionModel(flaky),
    )
    run = conv.start("Go")
    result = await run.wait()
    assert result.stop_reason == "error" and "upstream service refused" in result.detail
    assert isinstance(run.error, RunError)
    assert run.error.role == "beta" and run.error.turn == 2 and run.error.error_type == "ValueError"
    assert "upstream service refused" in str(run.error)
    await conv.close()


async def test_a_reader_that_falls_behind_loses_only_streamed_chunks(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    import parley._publish

    monkeypatch.setattr(parley._publish, "MAX_BUFFERED_CHUNKS", 3)
    team = write("team.yaml", team_yaml(max_turns=2))
    script = write(
        "s.yaml",
        """
        roles:
          alpha: ["one two three four five six seven eight nine ten eleven twelve"]
          beta: ["thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"]
        delay_s: 0.6
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    run = conv.start("Count")
    late = run.__aiter__()  # a reader that subscribes now and reads nothing until the run has ended
    first = await anext(late)
    await run.wait()
    rest = [ev async for ev in late]
    seen = [first, *rest]
    assert [e.type for e in seen if e.type != "chunk"] == [e.type for e in run.events]  # every finished event
    assert sum(e.type == "chunk" for e in seen) == 3  # the chunks beyond the bound were dropped
    # A reader that starts after the end sees the whole run too (chunks are not kept).
    again = [ev async for ev in run]
    assert again == run.events and isinstance(again[-1], RunResult)
