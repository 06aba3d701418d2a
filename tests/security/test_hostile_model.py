"""A hostile model: what a model sends in its tool calls is checked before anything uses it.

Approval ids are parley's own (two calls sharing an id get two cards, each deciding its own call); a
repeated call id is replaced before the chat, the store or AutoGen pair anything by it; a tool that was
not granted, an odd name, arguments that are not one JSON object or that are huge each become the call's
error result the agent sees, and the run goes on. Driven through `parley run` with the scripted model,
whose replies pass the same checks as every backend's (engine/autogen/models/metered.own_calls)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import team_yaml

from parley import Conversation, ToolRegistry
from parley.cli import main
from parley.events import ApprovalDecisionEvent, ApprovalRequestEvent, Event, ToolCallEvent, ToolResultEvent
from parley.paths import is_server_id
from parley.tools import forget_default_registry

Write = Callable[[str, str], Path]
TOOLS = '''
from parley.tools import tool

SENT = []


@tool(approval=True)
def wire_money(to: str, amount: float) -> str:
    """Send money (needs approval)."""
    SENT.append((to, amount))
    return f"sent {amount:g} to {to}"


@tool()
def echo(text: str) -> str:
    """Say the text back."""
    return "echo: " + text


@tool()
def ping() -> str:
    """Answer pong."""
    return "pong"
'''


@pytest.fixture
def registry(write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ToolRegistry]:
    write("hostile_tools/bank.py", TOOLS)
    monkeypatch.setenv("PARLEY_TOOLS", str(tmp_path / "hostile_tools"))
    forget_default_registry()  # the CLI rediscovers tools with PARLEY_TOOLS
    yield ToolRegistry.discover([tmp_path / "hostile_tools"])
    forget_default_registry()  # later tests rediscover them without it


def _cli_events(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["run", *argv, "--json", "--no-save", "--timeout", "60"])  # a run that hangs fails, bounded
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


async def _until_done(run: Any, on_event: Callable[[Event], None]) -> list[Event]:
    """Every event of the run, answering approvals as they come; a run that hangs fails after 60 s."""
    events: list[Event] = []

    async def consume() -> None:
        async for ev in run:
            events.append(ev)
            on_event(ev)

    try:
        await asyncio.wait_for(consume(), timeout=60)
    except TimeoutError:
        run.stop()
        pytest.fail(f"the run never ended; pending approvals: {[r.arguments for r in run.pending_approvals]}")
    return events


async def test_approving_the_harmless_card_never_runs_the_other_call(
    write: Write, registry: ToolRegistry
) -> None:
    team = write("team.yaml", team_yaml(roles=("clerk",), max_turns=1, tools={"clerk": ["wire_money"]}))
    script = write(
        "s.yaml",
        """
        roles:
          clerk:
            - calls:
                - {tool: wire_money, id: call_1, args: {to: ACME, amount: 1}}
                - {tool: wire_money, id: call_1, args: {to: MALLORY, amount: 1000000}}
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}", registry=registry)
    run = conv.start("Pay ACME one euro")

    def decide(ev: Event) -> None:
        if isinstance(ev, ApprovalRequestEvent):
            if ev.arguments["to"] == "ACME":
                run.approve(ev.request_id, actor="dana")
            else:
                run.deny(ev.request_id, "not this one", actor="dana")

    events = await _until_done(run, decide)
    sent = registry.get("wire_money").func.__globals__["SENT"]
    assert sent == [("ACME", 1)], "approving the ACME card ran another call"
    cards = [e for e in events if isinstance(e, ApprovalRequestEvent)]
    assert len({c.request_id for c in cards}) == 2 and all(is_server_id(c.request_id) for c in cards)
    decisions = {e.request_id: e.approved for e in events if isinstance(e, ApprovalDecisionEvent)}
    assert decisions == {c.request_id: c.arguments["to"] == "ACME" for c in cards}
    results = {e.call_id: e for e in events if isinstance(e, ToolResultEvent)}
    calls = {e.call_id: e.arguments["to"] for e in events if isinstance(e, ToolCallEvent)}
    assert len(calls) == 2, "two calls with one id must keep two ids"
    assert {calls[cid]: (r.is_error, r.content) for cid, r in results.items()} == {
        "ACME": (False, "sent 1 to ACME"),
        "MALLORY": (True, "the call to wire_money was denied: not this one. Do not retry it unchanged."),
    }
    await conv.close()


def test_a_repeated_call_id_is_renamed_before_anything_keys_on_it(
    write: Write, registry: ToolRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    team = write("team.yaml", team_yaml(roles=("clerk",), max_turns=2, tools={"clerk": ["echo"]}))
    script = write(
        "s.yaml",
        """
        roles:
          clerk:
            - calls:
                - {tool: echo, id: dup, args: {text: one}}
                - {tool: echo, id: dup, args: {text: two}}
            - {tool: echo, id: dup, args: {text: three}}
    """,
    )
    code, events = _cli_events(capsys, str(team), "Echo", "--model", f"scripted:{script}")
    assert code == 0
    calls = [e for e in events if e["type"] == "tool_call"]
    results = {e["call_id"]: e["content"] for e in events if e["type"] == "tool_result"}
    ids = [c["call_id"] for c in calls]
    assert len(ids) == 3 and len(set(ids)) == 3, ids
    assert {c["arguments"]["text"]: results[c["call_id"]] for c in calls} == {
        "one": "echo: one",
        "two": "echo: two",
        "three": "echo: three",
    }


def test_hostile_tool_calls_become_tool_errors_the_agent_sees(
    write: Write, registry: ToolRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    team = write("team.yaml", team_yaml(roles=("clerk",), max_turns=2, tools={"clerk": ["echo", "ping"]}))
    huge = "x" * 300_000
    script = write(
        "s.yaml",
        f"""
        roles:
          clerk:
            - calls:
                - {{tool: wire_money, args: {{to: ME, amount: 5}}}}
                - {{tool: "../../etc/passwd <script>alert(1)</script>", args: {{}}}}
                - {{tool: echo, raw_args: "{{not json"}}
                - {{tool: echo, raw_args: "[1, 2]"}}
                - {{tool: echo, raw_args: '"just a string"'}}
                - {{tool: echo, args: {{text: "{huge}"}}}}
                - {{tool: echo, raw_args: "{"[" * 50_000}{"]" * 50_000}"}}
                - {{tool: ping, raw_args: ""}}
            - "I will use my own tools properly."
    """,
    )
    code, events = _cli_events(capsys, str(team), "Go", "--model", f"scripted:{script}")
    result = events[-1]
    assert code == 0 and result["type"] == "result" and result["stop_reason"] != "error", result
    calls = [e for e in events if e["type"] == "tool_call"]
    outcome = {e["call_id"]: e for e in events if e["type"] == "tool_result"}
    seen = [(c["name"], outcome[c["call_id"]]["is_error"], outcome[c["call_id"]]["content"]) for c in calls]
    expected = [
        ("wire_money", "there is no tool 'wire_money' for you. Your tools are: echo, ping"),
        ("", "Your tools are: echo, ping"),
        ("echo", "the arguments of echo are not valid JSON"),
        ("echo", "must be one JSON object (names to values), not a JSON list"),
        ("echo", "must be one JSON object (names to values), not a JSON str"),
        ("echo", "characters; the limit is 262,144"),
        ("echo", "nested too deeply to read"),  # past Python's recursion limit: an error, not a crash
    ]
    for (name, is_error, content), (want_name, want) in zip(seen, expected, strict=False):
        assert is_error and want in content, (name, content[:200])
        if want_name:
            assert name == want_name
    odd = seen[1][0]
    assert "<" not in odd and "/" not in odd and " " not in odd and len(odd) <= 64, odd
    assert seen[-1] == ("ping", False, "pong")
    refused = next(c for c in calls if "characters; the call was refused" in c["content"])
    assert len(refused["content"]) < 3000, "a refused 300 KB call is stored and shown cut, not whole"
    assert registry.get("wire_money").func.__globals__["SENT"] == []
    assert [e["content"] for e in events if e["type"] == "message"][-1] == "I will use my own tools properly."


def test_a_handoff_called_with_arguments_that_are_not_an_object_is_an_error_not_a_crash(
    write: Write, registry: ToolRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    team = write(
        "team.yaml",
        team_yaml("swarm", roles=("alpha", "beta"), max_turns=2).replace(
            "    prompt: You are alpha.\n", "    prompt: You are alpha.\n    handoffs: [beta]\n", 1
        ),
    )
    script = write(
        "s.yaml",
        """
        roles:
          alpha:
            - {tool: transfer_to_beta, raw_args: "[1, 2, 3]"}
            - {tool: transfer_to_beta}
          beta: ["beta here"]
    """,
    )
    code, events = _cli_events(capsys, str(team), "Go", "--model", f"scripted:{script}")
    assert code == 0 and events[-1]["stop_reason"] != "error", events[-1]
    first = next(e for e in events if e["type"] == "tool_result")
    assert first["is_error"] and "must be one JSON object" in first["content"]
    assert [e["source"] for e in events if e["type"] == "message"][-1] == "beta"


@pytest.fixture
def fake_backend() -> Iterator[Any]:
    from fakeserver import serve

    yield from serve()


def _tool_calls_reply(*calls: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "logprobs": None,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                        for i, n, a in calls
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }


async def test_a_real_backend_s_tool_calls_pass_the_same_checks(fake_backend: Any) -> None:
    """The scripted model is not special: an OpenAI-compatible server's reply goes through the same checks."""
    from autogen_core.models import UserMessage

    from parley.engine.autogen.models import ModelPool
    from parley.models import SELECTOR, Meter

    pool = ModelPool(Meter())
    model = f"compatible:m@{fake_backend.url}/v1"
    echo = {
        "name": "echo",
        "description": "Say it back.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    }
    messages = [UserMessage(content="hi", source="user")]
    try:
        fake_backend.reply_json(
            _tool_calls_reply(("x", "echo", '{"text": "a"}'), ("x", "evil name <b>", "{}"))
        )
        fake_backend.reply_json(_tool_calls_reply(("x", "echo", '{"text": "b"}')))
        clerk = pool.client(model, "clerk")
        first = (await clerk.create(messages, tools=[echo])).content
        second = (await clerk.create(messages, tools=[echo])).content
        assert isinstance(first, list) and isinstance(second, list)
        ids = [c.id for c in [*first, *second]]
        assert len(set(ids)) == 3, ids
        assert first[1].name == "evil_name__b_"
        # Where only text is expected (the selector's pick), a call is text, not a crash of the selector.
        fake_backend.reply_json(_tool_calls_reply(("y", "transfer_to_mallory", "{}")))
        pick = (await pool.client(model, SELECTOR).create(messages)).content
        assert isinstance(pick, str) and "transfer_to_mallory" in pick
    finally:
        await pool.close()


async def test_a_call_id_repeated_after_a_restart_is_renamed_too(
    write: Write, registry: ToolRegistry, tmp_path: Path
) -> None:
    """The chat rebuilds a thread's tool steps from its stored events, keyed by call id, across restarts."""
    from parley.store import Store

    team = write("team.yaml", team_yaml(roles=("clerk",), max_turns=1, tools={"clerk": ["echo"]}))
    script = write(
        "s.yaml",
        """
        roles:
          clerk:
            - {tool: echo, id: dup, args: {text: before}}
            - {tool: echo, id: dup, args: {text: after}}
    """,
    )
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        conv = Conversation(team, model=f"scripted:{script}", registry=registry)
        tid = await store.create_thread("dana", conv.team.name, conv.model, "echo")
        conv.attach(store, tid)
        await conv.start("Echo").wait()
        again = await Conversation.resume(
            store, tid, model=f"scripted:{script}", registry=registry, teams_dirs=[team.parent]
        )
        await again.start("Once more").wait()
        calls = [e for e in again.history if isinstance(e, ToolCallEvent)]
        assert [c.arguments["text"] for c in calls] == ["before", "after"]
        assert len({c.call_id for c in calls}) == 2, [c.call_id for c in calls]
    finally:
        await store.close()


def test_a_selector_answer_nested_thousands_deep_is_not_a_crash() -> None:
    """JSON nested past Python's recursion limit is just an answer that names no role: the selector falls back."""
    from parley.engine.autogen.choose import parse_choice

    deep = "[" * 100_000 + "]" * 100_000
    assert parse_choice(deep, ["analyst", "writer"], "speaker") is None
    assert parse_choice('{"speaker": "writer"}', ["analyst", "writer"], "speaker") == "writer"
