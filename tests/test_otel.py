"""OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, a run sends one trace over OTLP/HTTP; without it, nothing
of OpenTelemetry's SDK is loaded."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from _support import collect, team_yaml

from parley import Conversation, ToolRegistry
from parley.events import (
    ApprovalRequestEvent,
    EscalationEvent,
    Event,
    QuestionEvent,
    RunResult,
    UsageEvent,
)
from parley.store import Store
from parley.telemetry import flush, tracing_enabled

trace_service_pb2 = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="OpenTelemetry is not installed: pip install 'parley[otel]'",
)
pytest.importorskip(
    "opentelemetry.sdk", reason="OpenTelemetry's SDK is not installed: pip install 'parley[otel]'"
)

Write = Callable[[str, str], Path]
ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 120
WAIT_S = 20.0
SCRIPT = """
roles:
  clerk:
    - tool: wire_money
      args: {to: "ACME", amount: 120}
    - "Paid ACME."
  auditor:
    - "Checked: the payment is in order. DONE"
selector: [clerk, auditor]
"""


@dataclass
class Span:
    name: str
    trace_id: bytes
    span_id: bytes
    parent: bytes
    start: int
    end: int
    attributes: dict[str, Any]
    error: bool


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class Receiver:
    """An OTLP/HTTP collector in the test: keeps every span posted to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.resources: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.take(request, self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()
                self.wfile.write(trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.paths: list[str] = []

    def take(self, request: Any, path: str) -> None:
        with self.changed:
            self.paths.append(path)
            for rs in request.resource_spans:
                self.resources.append({a.key: _value(a.value) for a in rs.resource.attributes})
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        attributes = {a.key: _value(a.value) for a in s.attributes}
                        error = s.status.code == s.status.STATUS_CODE_ERROR
                        self.spans.append(
                            Span(
                                s.name,
                                s.trace_id,
                                s.span_id,
                                s.parent_span_id,
                                s.start_time_unix_nano,
                                s.end_time_unix_nano,
                                attributes,
                                error,
                            )
                        )
            self.changed.notify_all()

    async def trace(self, name_prefix: str) -> list[Span]:
        """wait_for without holding up the event loop, on which the run's trace is finished."""
        return await asyncio.to_thread(self.wait_for, name_prefix)

    def wait_for(self, name_prefix: str) -> list[Span]:
        """Every span so far, once one whose name starts with `name_prefix` has come (at most WAIT_S)."""
        with self.changed:
            arrived = self.changed.wait_for(
                lambda: any(s.name.startswith(name_prefix) for s in self.spans), timeout=WAIT_S
            )
            assert arrived, (
                f"no span {name_prefix!r} arrived in {WAIT_S} s; got {[s.name for s in self.spans]}"
            )
            return list(self.spans)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    rec = Receiver()
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rec.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "parley-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


@pytest.fixture
def registry(write: Write, tmp_path: Path) -> ToolRegistry:
    write(
        "risky/bank.py",
        '''
        from parley.tools import tool

        @tool(approval=True)
        def wire_money(to: str, amount: float) -> str:
            """Send money (needs approval)."""
            return f"sent {amount} to {to}"
    ''',
    )
    return ToolRegistry.discover([tmp_path / "risky"])


def _children(spans: list[Span], parent: Span) -> list[Span]:
    return sorted((s for s in spans if s.parent == parent.span_id), key=lambda s: s.start)


def _within(child: Span, parent: Span) -> bool:
    return parent.start <= child.start <= child.end <= parent.end


async def _pay(
    write: Write, registry: ToolRegistry, tmp_path: Path, approve: bool
) -> tuple[Conversation, str, list[Event]]:
    """A scripted selector run: the clerk calls a tool that needs approval (given by alice, or denied), the auditor
    ends it. Returns the conversation, its stored thread's id and the run's events."""
    team = write(
        "team.yaml",
        team_yaml(
            "selector", ("clerk", "auditor"), max_turns=4, stop_text="DONE", tools={"clerk": ["wire_money"]}
        ),
    )
    conv = Conversation(team, model=f"scripted:{write('s.yaml', SCRIPT)}", registry=registry)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'parley.db'}")
    try:
        thread_id = await conv.save_to(store, "local", "Pay ACME")
        run = conv.start("Pay ACME")

        def decide(ev: Event) -> None:
            if isinstance(ev, ApprovalRequestEvent):
                if approve:
                    run.approve(ev.request_id, actor="alice")
                else:
                    run.deny(ev.request_id, "not this month", actor="alice")

        events = await collect(run, decide)
    finally:
        await conv.close()
        await store.close()
    return conv, thread_id, events


async def test_a_selector_run_is_one_trace_of_turns_model_calls_picks_tools_and_approvals(
    receiver: Receiver, write: Write, registry: ToolRegistry, tmp_path: Path
) -> None:
    conv, thread_id, events = await _pay(write, registry, tmp_path, approve=True)
    script = tmp_path / "s.yaml"
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "stop_text"

    spans = await receiver.trace("run ")
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    assert receiver.resources[0]["service.name"] == "parley-test"
    assert len({s.trace_id for s in spans}) == 1, "one trace per run"
    (root,) = [s for s in spans if s.name == "run test-team"]
    assert root.parent == b""
    assert root.attributes["parley.team"] == "test-team"
    assert root.attributes["parley.pattern"] == "selector"
    assert root.attributes["parley.model"] == f"scripted:{script}"
    assert root.attributes["parley.thread_id"] == thread_id
    assert root.attributes["parley.stop_reason"] == "stop_text"
    assert root.attributes["parley.turns"] == result.turns
    assert all(_within(s, root) for s in spans if s is not root)

    # A pick per turn, each with the selector's model call inside it.
    picks = [s for s in spans if s.name == "select_speaker"]
    assert [p.attributes["parley.speaker"] for p in picks] == ["clerk", "auditor"]
    assert all(p.parent == root.span_id for p in picks)

    # A turn per message, under the run, after its pick.
    turns = [s for s in spans if s.name.startswith("invoke_agent ")]
    assert [(t.attributes["gen_ai.agent.name"], t.attributes["parley.turn"]) for t in turns] == [
        ("clerk", 1),
        ("auditor", 2),
    ]
    assert all(t.parent == root.span_id for t in turns)
    assert picks[0].end <= turns[0].start and picks[1].end <= turns[1].start

    # Each model call is a GenAI `chat` span whose tokens are the meter's.
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert {c.name for c in chats} == {f"chat {script}"}
    for c in chats:
        assert c.attributes["gen_ai.operation.name"] == "chat"
        assert c.attributes["gen_ai.provider.name"] == "parley.scripted"
        assert c.attributes["gen_ai.request.model"] == str(script)
    seen = sorted(
        (
            c.attributes["parley.role"],
            c.attributes["gen_ai.usage.input_tokens"],
            c.attributes["gen_ai.usage.output_tokens"],
        )
        for c in chats
    )
    metered = sorted((r.source, r.prompt_tokens, r.completion_tokens) for r in conv.meter.calls)
    assert seen == metered
    assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in chats) == result.prompt_tokens
    for usage in (e for e in events if isinstance(e, UsageEvent)):  # each call's own start, end and finish
        (c,) = [c for c in chats if c.end == int(usage.ts * 1e9)]
        assert usage.latency_s is not None and usage.finish_reason
        assert abs((c.end - c.start) / 1e9 - usage.latency_s) < 1e-6
        assert c.attributes["gen_ai.response.finish_reasons"] == [usage.finish_reason]
    by_id = {s.span_id: s for s in spans}
    for c in chats:
        parent = by_id[c.parent]
        expected = "select_speaker" if c.attributes["parley.role"] == "selector" else "invoke_agent "
        assert parent.name.startswith(expected)
        assert _within(c, parent)

    # The tool call, in the clerk's turn, with the approval wait inside it.
    (tool,) = [s for s in spans if s.name == "execute_tool wire_money"]
    assert by_id[tool.parent] is turns[0]
    assert tool.attributes["gen_ai.tool.name"] == "wire_money"
    assert tool.attributes["gen_ai.tool.call.id"]
    assert not tool.error
    (approval,) = _children(spans, tool)
    assert approval.name == "await_approval wire_money"
    assert approval.attributes["parley.approval.decision"] == "approved"
    assert approval.attributes["parley.approval.actor"] == "alice"
    assert _within(approval, tool) and _within(tool, turns[0])

    # Every batch written to the store.
    writes = [s for s in spans if s.name == "store write"]
    assert writes and all(w.parent == root.span_id for w in writes)
    assert all(w.attributes["db.system.name"] == "sqlite" for w in writes)
    assert sum(w.attributes["parley.store.events"] for w in writes) == len(
        [e for e in events if e.type != "chunk"]
    )


async def test_a_denied_tool_call_is_a_failed_tool_span_with_the_denial_inside(
    receiver: Receiver, write: Write, registry: ToolRegistry, tmp_path: Path
) -> None:
    _, _, events = await _pay(write, registry, tmp_path, approve=False)
    assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "stop_text"
    spans = await receiver.trace("run ")
    (tool,) = [s for s in spans if s.name == "execute_tool wire_money"]
    assert tool.error and tool.attributes["error.type"] == "denied"
    (approval,) = _children(spans, tool)
    assert approval.attributes["parley.approval.decision"] == "denied"
    assert approval.attributes["parley.approval.actor"] == "alice"
    (root,) = [s for s in spans if s.name.startswith("run ")]
    assert not root.error, "a denial is the human's decision, not the run's failure"


async def test_a_hierarchical_run_nests_each_workers_sub_task_and_the_human_waits_in_the_managers_turn(
    receiver: Receiver,
) -> None:
    script = ROOT / "evals" / "scripts" / "desk-seo-escalation.yaml"
    conv = Conversation("editorial-desk", model=f"scripted:{script}")
    run = conv.start("Write a 300-word article on how to cut customer churn")
    seo = '{"title": "Keep your customers", "meta_description": "How small shops cut churn", "keywords": ["churn"]}'

    def steer(ev: Event) -> None:
        if isinstance(ev, QuestionEvent):
            run.answer(ev.question_id, "Owners of small shops.")
        elif isinstance(ev, EscalationEvent):
            run.resolve(ev.escalation_id, text=seo)

    try:
        events = await collect(run, steer)
    finally:
        await conv.close()
    assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "stop_text"

    spans = await receiver.trace("run editorial-desk")
    (root,) = [s for s in spans if s.name == "run editorial-desk"]
    (editor,) = _children(spans, root)
    assert editor.name == "invoke_agent editor"
    inside = _children(spans, editor)
    workers = {s.attributes["gen_ai.agent.name"]: s for s in inside if s.name.startswith("invoke_agent ")}
    assert sorted(workers) == ["researcher", "seo", "writer"]
    for worker in workers.values():
        assert worker.attributes["parley.subtask.id"] and _within(worker, editor)
        assert any(c.name.startswith("chat ") for c in _children(spans, worker))
    names = [s.name for s in inside]
    assert "execute_tool ask_human" in names and "await_answer" in names
    (wait,) = [s for s in _children(spans, workers["seo"]) if s.name == "await_escalation"]
    assert wait.attributes["parley.escalation.kind"] == "validation"
    assert wait.attributes["parley.escalation.decision"] == "write"
    chats = [s for s in spans if s.name.startswith("chat ")]
    tokens = sorted((c.attributes["parley.role"], c.attributes["gen_ai.usage.input_tokens"]) for c in chats)
    assert tokens == sorted((r.source, r.prompt_tokens) for r in conv.meter.calls)


def _run_elsewhere(write: Write, env: dict[str, str], before: str = "") -> list[str]:
    """Run a one-turn scripted conversation in a fresh interpreter with `env`; returns its stop reason, the
    OpenTelemetry SDK and parley.telemetry modules it loaded, and what it logged."""
    team = write("team.yaml", team_yaml(roles=("alpha",), max_turns=1))
    script = write("s.yaml", "roles:\n  alpha: [Hello.]\n")
    code = (
        "import asyncio, logging, sys\n"
        f"{before}\n"
        "from parley import Conversation\n"
        f"conv = Conversation({str(team)!r}, model={'scripted:' + str(script)!r})\n"
        "async def main():\n"
        "    result = await conv.start('Hi').wait()\n"
        "    await conv.close()\n"
        "    return result\n"
        "print(asyncio.run(main()).stop_reason)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'parley.telemetry.'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [*done.stdout.strip().splitlines(), done.stderr]


def test_without_otel_variables_a_run_loads_nothing_of_the_sdk(write: Write) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    assert not tracing_enabled(env)
    stop, modules, logged = _run_elsewhere(write, env)
    assert stop == "max_turns"
    assert modules == "[]"
    assert logged == ""


def test_an_endpoint_without_the_sdk_runs_untraced_and_says_what_to_install(write: Write) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
    no_sdk = "sys.modules['opentelemetry.sdk'] = None  # as if parley[otel] were not installed"
    stop, modules, logged = _run_elsewhere(write, env, no_sdk)
    assert stop == "max_turns"
    assert "parley.telemetry._otlp" not in modules
    assert "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry's SDK is not installed" in logged
    assert "pip install 'parley[otel]'" in logged


def test_the_standard_variables_switch_traces_on_and_off() -> None:
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert not tracing_enabled({})
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not tracing_enabled({**on, "OTEL_SDK_DISABLED": "true"})
    assert not tracing_enabled({**on, "OTEL_TRACES_EXPORTER": "none"})
    assert flush() is True
