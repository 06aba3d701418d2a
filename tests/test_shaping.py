"""What every model is sent, whatever its backend: one place shapes each request
(parley.engine.autogen.models.shape), and an empty answer is said, asked for again once, and never a turn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _support import collect, team_yaml
from autogen_core import FunctionCall, Image
from autogen_core.models import (
    AssistantMessage,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    SystemMessage,
    UserMessage,
)

from parley import Conversation
from parley.engine.autogen.models.shape import shape
from parley.events import MessageEvent, NoticeEvent, RunResult
from parley.models import BACKENDS

Write = Callable[[str, str], Path]
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
SYSTEM = SystemMessage(content="You are analyst.")
TASK = UserMessage(content="Review Q3.", source="user")
CALL = AssistantMessage(
    content=[FunctionCall(id="c1", name="kb_search", arguments='{"q": "q3"}')], source="analyst"
)
RESULT = FunctionExecutionResultMessage(
    content=[FunctionExecutionResult(call_id="c1", name="kb_search", content="Q3 revenue 4.1M")]
)


def _roles(messages: list[LLMMessage]) -> list[str]:
    return [type(m).__name__.removesuffix("Message") for m in messages]


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_role_speaking_twice_sends_one_assistant_message_then_a_user_one(backend: str) -> None:
    twice = [
        SYSTEM,
        TASK,
        AssistantMessage(content="Revenue grew.", source="analyst"),
        AssistantMessage(content="Margins held.", source="analyst"),
    ]
    out = shape(twice, backend)
    assert _roles(out)[-2:] == ["Assistant", "User"]
    assert out[-2].content == "Revenue grew.\n\nMargins held."
    assert "analyst" in str(out[-1].content)  # the turn is handed back by name


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_request_ending_in_tool_results_stays_as_it_is(backend: str) -> None:
    """AutoGen's reflection call after a tool call: the model answers the results, paired with their call."""
    before = [SYSTEM, TASK, AssistantMessage(content="Let me look.", source="analyst"), CALL, RESULT]
    out = shape(before, backend)
    assert out[-2:] == [CALL, RESULT]
    assert out[2] == before[2]  # text before a tool call is not merged into the call


@pytest.mark.parametrize("backend", ["compatible", "ollama", "anthropic", "local"])
def test_apis_without_a_name_field_read_the_speaker_in_the_text(backend: str) -> None:
    chart = Image.from_base64(PIXEL)
    others = [
        SYSTEM,
        TASK,
        UserMessage(content="Revenue grew 4%.", source="researcher"),
        UserMessage(content=["See the chart.", chart], source="designer"),
    ]
    out = shape(others, backend)
    assert _roles(out) == ["System", "User"]  # consecutive user messages become one (Anthropic alternates)
    merged = out[1].content
    assert isinstance(merged, list)
    assert merged[:2] == ["Review Q3.\n\nresearcher: Revenue grew 4%.", "designer: See the chart."]
    assert merged[2] is chart  # the picture survives


def test_openai_keeps_each_speaker_in_its_own_message_and_name() -> None:
    others = [SYSTEM, TASK, UserMessage(content="Revenue grew 4%.", source="researcher")]
    assert shape(others, "openai") == others


def test_one_system_prompt_for_apis_that_take_one() -> None:
    note = SystemMessage(content="Summary so far: revenue up.")
    out = shape([SYSTEM, TASK, note, AssistantMessage(content="Noted.", source="analyst")], "anthropic")
    assert _roles(out) == ["System", "User", "Assistant", "User"]
    assert "Summary so far" in str(out[1].content)
    assert shape([SYSTEM, TASK, note], "openai")[-1] == note  # OpenAI takes a system message anywhere


def test_a_system_only_request_ends_with_a_user_message_where_the_api_needs_one() -> None:
    assert _roles(shape([SYSTEM], "anthropic")) == ["System", "User"]
    assert _roles(shape([SYSTEM], "openai")) == ["System"]


# --- through a run: the scripted model gets what a production model gets ---------------------------


def _conv(write: Write, script: str, **team_kw: object) -> Conversation:
    team = write("team.yaml", team_yaml(**team_kw))  # type: ignore[arg-type]
    return Conversation(team, model=f"scripted:{write('script.yaml', script)}")


async def test_a_role_that_speaks_twice_is_asked_with_a_user_message_last(write: Write) -> None:
    conv = _conv(
        write,
        """
        roles:
          alpha: ["Alpha one.", "Alpha two."]
    """,
        pattern="round_robin",
        roles=("alpha",),
        max_turns=2,
    )
    result = (await collect(conv.start("Plan the launch")))[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "max_turns"
    second = [c for c in conv.pool.scripts[0].calls if c.who == "alpha"][1].messages
    assert isinstance(second[-1], UserMessage) and isinstance(second[-2], AssistantMessage)


async def test_an_empty_reply_is_said_asked_again_and_not_a_turn(write: Write) -> None:
    conv = _conv(
        write,
        """
        roles:
          alpha: ["", "", "", "Alpha speaks."]
          beta: ["Beta speaks.", "Beta again."]
    """,
        max_turns=3,
    )
    events = await collect(conv.start("Plan the launch"))

    notices = [e.content for e in events if isinstance(e, NoticeEvent) and e.source == "alpha"]
    assert notices == [
        "alpha's model answered nothing; asking it once more",
        "alpha's model answered nothing again: not counted as a turn",
        "alpha's model answered nothing; asking it once more",
    ]
    said = [(e.source, e.content, e.turn) for e in events if isinstance(e, MessageEvent)]
    assert said == [("beta", "Beta speaks.", 1), ("alpha", "Alpha speaks.", 2), ("beta", "Beta again.", 3)]
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "max_turns" and result.turns == 3


async def test_a_role_that_keeps_answering_nothing_stops_the_run_as_a_loop(write: Write) -> None:
    conv = _conv(
        write,
        """
        roles:
          alpha: ["", "", "", "", "", ""]
    """,
        roles=("alpha",),
        max_turns=5,
        extra="  max_repeats: 3\n",
    )
    events = await collect(conv.start("Plan the launch"))
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "loop" and result.turns == 0
    assert result.detail == "loop: alpha answered nothing 3 times in a row"
    assert not [e for e in events if isinstance(e, MessageEvent)]


def test_anthropic_gets_earlier_tool_calls_with_object_arguments_only() -> None:
    """A model (or a proxy) that sent `[1, 2]` as arguments: parley refused the call; autogen-ext's Anthropic
    client cannot send such a call back, and every later call of the role would fail."""
    odd = AssistantMessage(
        content=[FunctionCall(id="c1", name="kb_search", arguments="[1, 2]")], source="analyst"
    )
    refused = FunctionExecutionResultMessage(
        content=[
            FunctionExecutionResult(
                call_id="c1", name="kb_search", content="refused: arguments must be an object", is_error=True
            )
        ]
    )
    out = shape([SYSTEM, TASK, odd, refused], "anthropic")
    call = out[2].content[0]  # type: ignore[index]
    assert isinstance(call, FunctionCall) and (call.id, call.name) == ("c1", "kb_search")
    assert call.arguments == '{"arguments": "[1, 2]"}' and out[3] == refused
    assert shape([SYSTEM, TASK, odd, refused], "openai")[2] == odd  # the others take what the model sent
