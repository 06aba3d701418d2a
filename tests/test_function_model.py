"""A model that is a Python function (parley.models.FunctionModel), through a whole conversation: it reads the
conversation in parley's own message type, calls a tool, answers the tool's result, and is metered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _support import collect, team_yaml

from parley import Conversation, ToolRegistry
from parley.engine.autogen.models import ModelPool
from parley.errors import ConfigError
from parley.events import MessageEvent, RunResult, ToolCallEvent, ToolResultEvent, UsageEvent
from parley.models import FunctionModel, Meter, ModelRequest, ToolCall

Write = Callable[[str, str], Path]

LOOKUP = '''
    from parley.tools import tool

    @tool
    def lookup(key: str) -> str:
        """Look a figure up."""
        return {"q3": "4.2M"}.get(key, "unknown")
'''


def answer(request: ModelRequest) -> str | ToolCall:
    """The clerk looks Q3 up and reports it; the reviewer approves what the clerk said."""
    if request.who == "reviewer":
        said = [m for m in request.messages if m.speaker == "clerk"]
        return f"APPROVE: {said[-1].text}" if said else "nothing to review"
    if request.results_pending:  # its tool ran: answer the result (no tools offered now)
        return f"Q3 revenue was {request.messages[-1].tool_results[0].content}"
    return ToolCall(name="lookup", arguments={"key": "q3"})


async def test_a_function_model_calls_a_tool_answers_its_result_and_is_metered(
    write: Write, tmp_path: Path
) -> None:
    write("tools/lookup.py", LOOKUP)
    team = write(
        "team.yaml", team_yaml(roles=("clerk", "reviewer"), max_turns=2, tools={"clerk": ["lookup"]})
    )
    model = FunctionModel(answer, name="desk")
    conv = Conversation(team, model=model, registry=ToolRegistry.discover([tmp_path / "tools"]))
    try:
        events = await collect(conv.start("What was Q3 revenue?"))
    finally:
        await conv.close()

    assert conv.model == "function:desk"
    call = next(e for e in events if isinstance(e, ToolCallEvent))
    assert (call.source, call.name, call.arguments) == ("clerk", "lookup", {"key": "q3"})
    assert next(e for e in events if isinstance(e, ToolResultEvent)).content == "4.2M"
    said = [(e.source, e.content) for e in events if isinstance(e, MessageEvent)]
    assert said == [("clerk", "Q3 revenue was 4.2M"), ("reviewer", "APPROVE: Q3 revenue was 4.2M")]
    assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "max_turns"

    # What the function was sent: the task from the human, then (after the tool) its own call and the result.
    first, reflection, review = model.requests
    assert (first.who, first.tools) == ("clerk", ("lookup",))
    assert [(m.role, m.speaker, m.text) for m in first.messages if m.role != "system"] == [
        ("user", "user", "What was Q3 revenue?")
    ]
    assert reflection.tools == () and reflection.results_pending
    asked = next(m for m in reflection.messages if m.tool_calls)
    assert (asked.speaker, asked.tool_calls[0].name, dict(asked.tool_calls[0].arguments)) == (
        "clerk",
        "lookup",
        {"key": "q3"},
    )
    assert review.who == "reviewer"

    # Metered like any model: three calls (one answering the tool's result), counted, at no cost.
    usage = [e for e in events if isinstance(e, UsageEvent)]
    assert [(u.source, u.model, u.reflection, u.estimated) for u in usage] == [
        ("clerk", "function:desk", False, True),
        ("clerk", "function:desk", True, True),
        ("reviewer", "function:desk", False, True),
    ]
    assert all(u.prompt_tokens > 0 for u in usage) and usage[-1].cost_usd == 0.0
    assert [c.source for c in conv.meter.calls] == ["clerk", "clerk", "reviewer"]


async def test_an_async_function_model_answers_and_its_failure_names_what_it_returned() -> None:
    async def echo(request: ModelRequest) -> str:
        return f"echo: {request.last_text}"

    pool = ModelPool(Meter())
    from autogen_core.models import UserMessage

    client = pool.client(FunctionModel(echo), "alpha")
    result = await client.create([UserMessage(content="hello", source="user")])
    assert result.content == "echo: hello" and pool.meter.calls[0].model == "function:echo"

    broken = pool.client(FunctionModel(lambda request: 42, name="broken"), "alpha")  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match="returned int"):
        await broken.create([UserMessage(content="hello", source="user")])


def test_a_function_model_string_without_its_object_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="function:ghost"):
        ModelPool(Meter()).client("function:ghost", "alpha")


def test_two_function_models_cannot_share_a_name() -> None:
    pool = ModelPool(Meter())
    pool.client(FunctionModel(answer, name="same"), "alpha")
    with pytest.raises(ConfigError, match="two function models"):
        pool.client(FunctionModel(answer, name="same"), "beta")
