"""Risky tools wait for a human: approve lets the call run, deny reaches the agent as the tool's error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import collect, team_yaml

from parley import Conversation, ToolRegistry
from parley.events import (
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    Event,
    MessageEvent,
    RunResult,
    ToolResultEvent,
)
from parley.run import Run
from parley.tools import RunContext

Write = Callable[[str, str], Path]
SAFETY_S = 30.0
SCRIPT = """
roles:
  clerk:
    - tool: wire_money
      args: {to: "ACME", amount: 120}
    - "Done."
"""


@pytest.fixture
def registry(write: Write, tmp_path: Path) -> ToolRegistry:
    write(
        "risky/bank.py",
        '''
        from parley.tools import tool

        SENT = []

        @tool(approval=True)
        def wire_money(to: str, amount: float) -> str:
            """Send money (needs approval)."""
            SENT.append((to, amount))
            return f"sent {amount} to {to}"
    ''',
    )
    return ToolRegistry.discover([tmp_path / "risky"])


def _conv(write: Write, registry: ToolRegistry, **kw: object) -> Conversation:
    team = write("team.yaml", team_yaml(roles=("clerk",), max_turns=2, tools={"clerk": ["wire_money"]}))
    script = write("s.yaml", SCRIPT)
    return Conversation(team, model=f"scripted:{script}", registry=registry, **kw)  # type: ignore[arg-type]


async def _run(conv: Conversation, decide: Callable[[ApprovalRequestEvent], None] | None) -> list[Event]:
    run = conv.start("Pay ACME")

    def on_event(ev: Event) -> None:
        if isinstance(ev, ApprovalRequestEvent) and decide is not None:
            assert run.pending_approvals == [ev]
            decide(ev)

    return await collect(run, on_event)


def _current(conv: Conversation) -> Run:
    run = conv.current_run
    assert run is not None
    return run


def _sent(registry: ToolRegistry) -> list[tuple[str, float]]:
    return registry.get("wire_money").func.__globals__["SENT"]  # type: ignore[no-any-return]


async def test_approved_call_runs(write: Write, registry: ToolRegistry) -> None:
    conv = _conv(write, registry)
    events = await _run(conv, lambda ev: _current(conv).approve(ev.request_id, actor="dana"))
    req = next(e for e in events if isinstance(e, ApprovalRequestEvent))
    assert (req.source, req.name, req.arguments) == ("clerk", "wire_money", {"to": "ACME", "amount": 120})
    decision = next(e for e in events if isinstance(e, ApprovalDecisionEvent))
    assert decision.approved and decision.actor == "dana"
    assert _sent(registry) == [("ACME", 120)]
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.content == "sent 120.0 to ACME" and not result.is_error


async def test_denied_call_reaches_the_agent_as_an_error(write: Write, registry: ToolRegistry) -> None:
    conv = _conv(write, registry)
    events = await _run(conv, lambda ev: _current(conv).deny(ev.request_id, "wrong payee", actor="dana"))
    assert _sent(registry) == []
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.is_error and "denied: wrong payee" in result.content
    calls = [c for c in conv.pool.scripts[0].calls if c.who == "clerk"]
    assert len(calls) == 2
    assert any("denied: wrong payee" in str(m.content) for m in calls[1].messages)
    assert [e.content for e in events if isinstance(e, MessageEvent)][-1] == "Done."


async def test_standing_rule_and_stop_while_waiting(write: Write, registry: ToolRegistry) -> None:
    conv = _conv(write, registry, approvals={"wire_money": False})
    events = await _run(conv, None)
    decision = next(e for e in events if isinstance(e, ApprovalDecisionEvent))
    assert not decision.approved and decision.actor == "policy"
    assert _sent(registry) == []

    conv2 = _conv(write, registry)
    events2 = await _run(conv2, lambda ev: _current(conv2).stop())
    result = events2[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "stopped"
    # Nobody decided before the run ended: the approval is recorded as cancelled, and the tool never ran.
    decided = [(e.actor, e.approved, e.content) for e in events2 if isinstance(e, ApprovalDecisionEvent)]
    assert _sent(registry) == [] and decided == [("parley", False, "cancelled")]


async def test_team_file_overrides_whether_a_tool_needs_approval(
    write: Write, registry: ToolRegistry
) -> None:
    team = write(
        "team.yaml",
        team_yaml(roles=("clerk",), max_turns=2, tools={"clerk": ["wire_money"]})
        + "approvals: {wire_money: never}\n",
    )
    script = write("s.yaml", SCRIPT)
    conv = Conversation(team, model=f"scripted:{script}", registry=registry)
    events = await _run(conv, None)
    assert not any(isinstance(e, ApprovalRequestEvent) for e in events)
    assert _sent(registry) == [("ACME", 120)]


async def test_a_call_to_an_ungranted_tool_is_refused_and_recorded(
    write: Write, registry: ToolRegistry
) -> None:
    team = write(
        "team.yaml", team_yaml(roles=("clerk", "auditor"), max_turns=2, tools={"auditor": ["wire_money"]})
    )
    script = write(
        "s.yaml",
        """
        roles:
          clerk:
            - tool: wire_money
              args: {to: "ME", amount: 1000000}
          auditor: ["Nothing to see."]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}", registry=registry)
    events = await _run(conv, None)
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.source == "clerk" and result.is_error and "wire_money" in result.content
    assert _sent(registry) == [] and not any(isinstance(e, ApprovalRequestEvent) for e in events)


def test_cli_approval_rules(
    write: Write,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    registry: ToolRegistry,
    request: pytest.FixtureRequest,
) -> None:
    from parley.cli import main
    from parley.tools import forget_default_registry

    monkeypatch.setenv("PARLEY_TOOLS", str(tmp_path / "risky"))
    forget_default_registry()  # rediscover with PARLEY_TOOLS
    request.addfinalizer(forget_default_registry)  # and without it after this test
    team = write("team.yaml", team_yaml(roles=("clerk",), max_turns=2, tools={"clerk": ["wire_money"]}))
    script = write("s.yaml", SCRIPT)
    for flags, verdict in (
        (["--approve", "all"], "approved by policy"),
        (["--approve", "none"], "denied by policy"),
        (["--approve", "other,wire_money"], "approved by policy"),
        ([], "denied by cli"),
    ):
        assert main(["run", str(team), "Pay", "--model", f"scripted:{script}", *flags]) == 0
        out = capsys.readouterr().out
        assert f"wire_money {verdict}" in out, (flags, out)


class _DecidingHost:
    """A host of parley.host's protocol, nothing more: the approval stays open until the test decides it."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.asked: list[tuple[str, str, dict[str, object], str | None]] = []
        self.decision: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        self.was_asked = asyncio.Event()

    def context_for(self, role: str) -> RunContext:
        return RunContext(workspace=self.workspace, role=role)

    def files_written(self, role: str, tool: str, paths: list[Path]) -> None:
        pass

    def request_approval(
        self, role: str, tool: str, args: dict[str, object], call_id: str | None
    ) -> asyncio.Future[tuple[bool, str]]:
        self.asked.append((role, tool, args, call_id))
        self.was_asked.set()
        return self.decision


async def test_a_gated_tool_asks_its_host_and_a_stop_abandons_the_wait(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    """Any host of the protocol can run a tool that needs approval: the tool asks it, waits for its answer, and a
    stopped run (the engine's cancellation) abandons the wait without running the tool."""
    from autogen_core import CancellationToken

    from parley._calls import ToolDenied
    from parley.engine.autogen.tools import BoundTool

    host = _DecidingHost(tmp_path)
    tool = BoundTool(registry.get("wire_money"), "clerk", host)
    denied = asyncio.ensure_future(
        tool.run_json({"to": "ACME", "amount": 5}, CancellationToken(), call_id="c1")
    )
    await asyncio.wait_for(host.was_asked.wait(), SAFETY_S)  # a safety net: the question is asked at once
    assert host.asked == [("clerk", "wire_money", {"to": "ACME", "amount": 5}, "c1")]
    host.decision.set_result((False, "not today"))
    with pytest.raises(ToolDenied, match="denied: not today"):
        await denied

    host = _DecidingHost(tmp_path)
    token = CancellationToken()
    waiting = asyncio.ensure_future(
        BoundTool(registry.get("wire_money"), "clerk", host).run_json({"to": "X", "amount": 1}, token)
    )
    await asyncio.wait_for(host.was_asked.wait(), SAFETY_S)  # a safety net: the question is asked at once
    token.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert host.decision.cancelled() and _sent(registry) == []
