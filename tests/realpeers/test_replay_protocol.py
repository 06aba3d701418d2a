"""The replay server speaks the wire formats the real SDKs expect: OpenAI's chat completions (plain and
streamed, tool calls single, parallel and split across chunks, usage) and Anthropic's Messages API
(content blocks, tool_use, streamed events). Each test drives the vendor's own SDK against it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from parley.engine.autogen.models.replay import replay_server
from parley.models import ScriptedModel, ScriptFile

Write = Callable[[str, str], Path]

SCRIPT = """
roles:
  analyst:
    - "Q3 revenue was 4.2M"
    - tool: sql_query
      args: {query: "SELECT 1"}
    - calls:
        - {tool: researcher, args: {task: "Find the Q3 figures"}}
        - {tool: writer, args: {task: "Draft the intro"}, id: call_w}
    - tool: lookup
      raw_args: "{not json"
      id: dup
    - tool: lookup
      args: {order_id: 1042}
      id: dup
    - json: {verdict: approve}
"""
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
    for n in ("sql_query", "researcher", "writer", "lookup")
]
ANTHROPIC_TOOLS = [
    {"name": n, "input_schema": {"type": "object", "properties": {}}}
    for n in ("sql_query", "researcher", "writer", "lookup")
]


@pytest.fixture
def script(write: Write) -> ScriptedModel:
    return ScriptedModel.load(write("s.yaml", SCRIPT))


@pytest.fixture
def token(script: ScriptedModel) -> Iterator[str]:
    token = replay_server().register(script, "analyst")
    yield token
    replay_server().forget(token)


def _openai(token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=replay_server().openai_url(token), api_key="replay", max_retries=0)


def _anthropic(token: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=replay_server().anthropic_url(token), api_key="replay", max_retries=0
    )


ASK = [{"role": "user", "content": "Summarise Q3"}]


async def test_openai_sdk_reads_text_tool_calls_parallel_calls_and_usage(token: str) -> None:
    client = _openai(token)
    said = await client.chat.completions.create(model="m", messages=ASK, tools=TOOLS)
    assert said.choices[0].message.content == "Q3 revenue was 4.2M"
    assert said.choices[0].finish_reason == "stop"
    assert said.usage is not None and said.usage.prompt_tokens > 0 and said.usage.completion_tokens > 0

    one = await client.chat.completions.create(model="m", messages=ASK, tools=TOOLS)
    [call] = one.choices[0].message.tool_calls or []
    assert one.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("sql_query", {"query": "SELECT 1"})

    both = await client.chat.completions.create(model="m", messages=ASK, tools=TOOLS)
    calls = both.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("researcher", {"task": "Find the Q3 figures"}),
        ("writer", {"task": "Draft the intro"}),
    ]
    assert calls[1].id == "call_w" and calls[0].id != calls[1].id


async def test_openai_sdk_reassembles_streamed_tool_call_deltas_and_reads_usage_last(token: str) -> None:
    client = _openai(token)
    # The text reply, streamed word by word.
    stream = await client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, stream=True)
    words = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert len(words) > 1 and "".join(words) == "Q3 revenue was 4.2M"

    # A tool call whose arguments arrive in pieces: the SDK's own accumulator puts them back together.
    async with client.chat.completions.stream(
        model="m", messages=ASK, tools=TOOLS, stream_options={"include_usage": True}
    ) as events:
        pieces = [e async for e in events if e.type == "tool_calls.function.arguments.delta"]
        final = await events.get_final_completion()
    assert len(pieces) > 1
    [call] = final.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == ("sql_query", {"query": "SELECT 1"})
    assert final.usage is not None and final.usage.completion_tokens > 0

    # Parallel calls, streamed: two calls, told apart by their index only.
    async with client.chat.completions.stream(model="m", messages=ASK, tools=TOOLS) as events:
        final = await events.get_final_completion()
    names = [
        (c.function.name, json.loads(c.function.arguments)) for c in final.choices[0].message.tool_calls or []
    ]
    assert names == [("researcher", {"task": "Find the Q3 figures"}), ("writer", {"task": "Draft the intro"})]


async def test_hostile_replies_go_out_exactly_as_scripted(token: str, script: ScriptedModel) -> None:
    script.cursors["analyst"] = 3
    client = _openai(token)
    bad = await client.chat.completions.create(model="m", messages=ASK, tools=TOOLS)
    same = await client.chat.completions.create(model="m", messages=ASK, tools=TOOLS)
    [first] = bad.choices[0].message.tool_calls or []
    [second] = same.choices[0].message.tool_calls or []
    assert first.function.arguments == "{not json"
    assert first.id == second.id == "dup"


async def test_a_reflection_call_answers_with_the_tool_results_and_takes_no_reply(
    token: str, script: ScriptedModel
) -> None:
    """AutoGen's reflection: no tools offered, the request ending in the tool results (here followed by a
    short user-role message, as shaped requests end)."""
    thread = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "sql_query", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "sql_query", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "EMEA 85,383"},
        {"role": "tool", "tool_call_id": "b", "content": "APAC 29,440"},
        {"role": "user", "content": "(continue)"},
    ]
    client = _openai(token)
    said = await client.chat.completions.create(model="m", messages=thread)
    assert said.choices[0].message.content == "EMEA 85,383\nAPAC 29,440"
    assert script.cursors.get("analyst", 0) == 0
    # With tools offered, the same thread is a new step: the script's next reply.
    step = await client.chat.completions.create(model="m", messages=thread, tools=TOOLS)
    assert step.choices[0].message.content == "Q3 revenue was 4.2M"


async def test_a_script_that_runs_out_is_a_400_naming_the_role(token: str, script: ScriptedModel) -> None:
    script.cursors["analyst"] = 6
    with pytest.raises(openai.BadRequestError, match="analyst ran past the end of its script"):
        await _openai(token).chat.completions.create(model="m", messages=ASK)
    with pytest.raises(anthropic.BadRequestError, match="analyst ran past the end of its script"):
        await _anthropic(token).messages.create(model="m", max_tokens=100, messages=ASK)


async def test_an_unknown_address_or_a_malformed_body_is_a_clear_400() -> None:
    with pytest.raises(openai.BadRequestError, match="no script answers at this address"):
        await _openai("nobody").chat.completions.create(model="m", messages=ASK)
    async with httpx.AsyncClient() as http:
        token = replay_server().register(ScriptedModel(path="-", script=ScriptFile()), "x")
        try:
            r = await http.post(replay_server().openai_url(token) + "/chat/completions", content=b"[1, 2")
        finally:
            replay_server().forget(token)
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]


async def test_anthropic_sdk_reads_text_tool_use_and_parallel_tool_use(token: str) -> None:
    client = _anthropic(token)
    said = await client.messages.create(model="m", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS)
    assert [b.type for b in said.content] == ["text"] and said.content[0].text == "Q3 revenue was 4.2M"  # type: ignore[union-attr]
    assert said.stop_reason == "end_turn" and said.usage.input_tokens > 0 and said.usage.output_tokens > 0
    one = await client.messages.create(model="m", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS)
    assert one.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in one.content] == [("sql_query", {"query": "SELECT 1"})]  # type: ignore[union-attr]
    both = await client.messages.create(model="m", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS)
    assert [(b.name, b.input) for b in both.content] == [  # type: ignore[union-attr]
        ("researcher", {"task": "Find the Q3 figures"}),
        ("writer", {"task": "Draft the intro"}),
    ]


async def test_anthropic_sdk_reassembles_a_streamed_tool_use_and_answers_a_reflection(
    token: str, script: ScriptedModel
) -> None:
    client = _anthropic(token)
    async with client.messages.stream(
        model="m", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS
    ) as events:
        text = [e async for e in events.text_stream]
    assert "".join(text) == "Q3 revenue was 4.2M" and len(text) > 1
    async with client.messages.stream(
        model="m", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS
    ) as events:
        final = await events.get_final_message()
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0
    [use] = final.content
    assert (use.name, use.input) == ("sql_query", {"query": "SELECT 1"})  # type: ignore[union-attr]
    # The reflection after it (tool_choice none, as autogen-ext sends it) takes no script reply.
    thread = [
        *ASK,
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": use.id,
                    "name": "sql_query",  # type: ignore[union-attr]
                    "input": {"query": "SELECT 1"},
                }
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "1 row: 1"}]},
    ]  # type: ignore[union-attr]
    used = script.cursors["analyst"]
    async with client.messages.stream(
        model="m", max_tokens=100, messages=thread, tools=ANTHROPIC_TOOLS, tool_choice={"type": "none"}
    ) as events:
        reflected = await events.get_final_message()
    assert reflected.content[0].text == "1 row: 1"  # type: ignore[union-attr]
    assert script.cursors["analyst"] == used


async def test_a_reply_longer_than_the_cap_is_cut_there_and_says_so(
    token: str, script: ScriptedModel
) -> None:
    cut = await _openai(token).chat.completions.create(model="m", messages=ASK, max_completion_tokens=2)
    text = cut.choices[0].message.content or ""
    assert cut.choices[0].finish_reason == "length" and text and "Q3 revenue was 4.2M".startswith(text)
    assert len(text) < len("Q3 revenue was 4.2M")
    assert cut.usage is not None and cut.usage.completion_tokens == 2
    with pytest.raises(openai.BadRequestError, match="`max_tokens` must be a positive integer"):
        await _openai(token).chat.completions.create(model="m", messages=ASK, max_tokens=0)
    async with _anthropic(token).messages.stream(
        model="m", max_tokens=1, messages=ASK, tools=ANTHROPIC_TOOLS
    ) as events:
        final = await events.get_final_message()
    assert final.stop_reason == "tool_use", "a tool call is never cut"
    script.cursors["analyst"] = 5
    whole = await _anthropic(token).messages.create(model="m", max_tokens=1, messages=ASK)
    assert whole.stop_reason == "max_tokens" and whole.usage.output_tokens == 1
    assert '{"verdict": "approve"}'.startswith(whole.content[0].text)  # type: ignore[union-attr]


async def test_a_pick_bound_to_a_json_schema_goes_out_as_that_json(token: str, script: ScriptedModel) -> None:
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "pick_speaker",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"speaker": {"type": "string", "enum": ["analyst"]}},
                "required": ["speaker"],
                "additionalProperties": False,
            },
        },
    }
    picked = await _openai(token).chat.completions.create(model="m", messages=ASK, response_format=schema)  # type: ignore[call-overload]
    assert json.loads(picked.choices[0].message.content or "") == {"speaker": "Q3 revenue was 4.2M"}
    script.cursors["analyst"] = 5  # a reply that is JSON already goes out as scripted
    as_is = await _openai(token).chat.completions.create(model="m", messages=ASK, response_format=schema)  # type: ignore[call-overload]
    assert json.loads(as_is.choices[0].message.content or "") == {"verdict": "approve"}
