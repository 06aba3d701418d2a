"""AutoGen's private internals parley relies on (parley/engine/autogen/internals.py): if an AutoGen release
moves one, this fails and says which, before any conversation misbehaves."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _support import team_yaml
from autogen_agentchat.agents import AssistantAgent
from autogen_core import EVENT_LOGGER_NAME, SingleThreadedAgentRuntime
from autogen_core._telemetry._tracing import TraceHelper
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from parley import Conversation
from parley.engine.autogen.internals import (
    RUNTIME_HOOKS,
    TOOL_CALL_PARAMETERS,
    TRACER_ATTRIBUTE,
    QuietRuntime,
    graph_of,
    manager_name_of,
    participants_of,
    runtime_of,
    spans_recorded,
)

Write = Callable[[str, str], Path]


def test_the_tool_call_hook_still_takes_the_arguments_parley_checks() -> None:
    hook = getattr(AssistantAgent, "_execute_tool_call", None)
    assert hook is not None, (
        "AssistantAgent._execute_tool_call is gone: CheckedToolCalls no longer checks calls"
    )
    params = set(inspect.signature(hook).parameters)
    missing = [p for p in TOOL_CALL_PARAMETERS if p not in params]
    assert not missing, f"AssistantAgent._execute_tool_call no longer takes {missing}"


async def test_a_graph_team_still_shows_its_participants_graph_and_manager(write: Write) -> None:
    team = write("team.yaml", team_yaml("sequential", roles=("research", "write")))
    script = write("s.yaml", "roles:\n  research: ['facts']\n  write: ['draft']\n")
    conv = Conversation(team, model=f"scripted:{script}")
    built, _ = await conv.engine.ensure_team()
    assert [p.name for p in participants_of(built)] == ["research", "write"]
    assert set(graph_of(built).nodes) == {"research", "write"}
    name = manager_name_of(built)
    assert name in (await built.save_state())["agent_states"], (
        "the manager's state is no longer saved under its name"
    )
    await conv.close()


def test_the_runtime_hooks_quiet_runtime_overrides_still_take_what_it_passes_on() -> None:
    for name, expected in RUNTIME_HOOKS.items():
        hook = getattr(SingleThreadedAgentRuntime, name, None)
        assert hook is not None, (
            f"SingleThreadedAgentRuntime.{name} is gone: QuietRuntime no longer saves its work"
        )
        params = tuple(inspect.signature(hook).parameters)
        assert params == expected, f"SingleThreadedAgentRuntime.{name} now takes {params}, not {expected}"


def test_autogens_runtime_still_opens_every_span_through_the_helper_quiet_runtime_replaces() -> None:
    runtime = SingleThreadedAgentRuntime()
    helper = getattr(runtime, TRACER_ATTRIBUTE, None)
    assert callable(getattr(helper, "trace_block", None)), (
        f"SingleThreadedAgentRuntime.{TRACER_ATTRIBUTE} is gone: QuietRuntime no longer skips its spans"
    )
    code = inspect.getsource(SingleThreadedAgentRuntime)
    opened = code.count("with self.")
    through = code.count(f"with self.{TRACER_ATTRIBUTE}.trace_block(")
    assert through >= 5 and opened == through, (
        f"AutoGen's runtime opens {opened - through} span(s) another way: QuietRuntime no longer skips them all"
    )


async def _converse(write: Write, runtime: type = QuietRuntime) -> Conversation:
    team = write("team.yaml", team_yaml("round_robin", roles=("alpha", "beta"), max_turns=2))
    script = write("s.yaml", "roles:\n  alpha: ['alpha likes plums']\n  beta: ['beta likes pears']\n")
    conv = Conversation(team, model=f"scripted:{script}")
    said = [ev async for ev in conv.start("Which fruit?") if ev.type == "message"]
    assert len(said) == 2
    built, _ = await conv.engine.ensure_team()
    assert type(runtime_of(built)) is runtime
    return conv


class _Payloads(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.payloads: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.payloads.append(str(record.msg))  # AutoGen's events print as JSON, their payload inside


async def test_autogens_runtime_opens_no_span_and_writes_no_message_for_an_event_log_that_does_not_listen(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[object] = []
    serialize = SingleThreadedAgentRuntime._try_serialize  # pyright: ignore[reportPrivateUsage]

    def counting(self: SingleThreadedAgentRuntime, message: object) -> str:
        written.append(message)
        return serialize(self, message)

    monkeypatch.setattr(SingleThreadedAgentRuntime, "_try_serialize", counting)
    opened: list[object] = []
    trace_block = TraceHelper.trace_block

    def counting_spans(self: TraceHelper, *args: Any, **kwargs: Any) -> Any:
        opened.append(args)
        return trace_block(self, *args, **kwargs)

    monkeypatch.setattr(TraceHelper, "trace_block", counting_spans)
    events = logging.getLogger(EVENT_LOGGER_NAME)
    level = events.level
    listening = _Payloads()
    try:
        events.setLevel(logging.WARNING)
        await (await _converse(write)).close()
        assert written == [], "messages were written as JSON for an event log nobody reads"
        assert opened == [], "the runtime opened spans that go nowhere"
        events.addHandler(listening)
        events.setLevel(logging.INFO)
        await (await _converse(write)).close()
    finally:
        events.removeHandler(listening)
        events.setLevel(level)
    assert written, "the event log at INFO was given no message"
    assert any("alpha likes plums" in p for p in listening.payloads), listening.payloads[:3]


async def test_autogens_runtime_spans_keep_their_attributes_once_a_tracer_provider_records_them(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.delenv("AUTOGEN_DISABLE_RUNTIME_TRACING", raising=False)
    assert not spans_recorded()
    # The process's provider, as `trace.set_tracer_provider` sets it once for good (undone after the test).
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    assert spans_recorded()
    await (await _converse(write, SingleThreadedAgentRuntime)).close()
    provider.force_flush()
    messages = [str(s.attributes.get("message", "")) for s in exporter.get_finished_spans() if s.attributes]
    assert any("alpha likes plums" in m for m in messages), "AutoGen's spans lost the message they carry"
    monkeypatch.setenv("AUTOGEN_DISABLE_RUNTIME_TRACING", "true")
    assert not spans_recorded()
