"""The issue's acceptance for MCP time-outs: a 60 s call succeeds with `timeout_s: 90` and fails cleanly with
`timeout_s: 30`, over stdio and over streamable HTTP. The four runs go concurrently, so this test takes about
65 s of wall time in all (the 60 s call is the point of it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _support import team_yaml
from mcp_peers import http_server, server_yaml

from parley import Conversation
from parley.events import MessageEvent, RunResult, ToolResultEvent

Write = Callable[[str, str], Path]


@pytest.fixture(autouse=True)
def _trusted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PARLEY_TRUSTED_TEAMS", str(tmp_path))


@pytest.fixture
def http_url() -> Iterator[str]:
    with http_server() as url:
        yield url


async def _slow_call(write: Write, name: str, server: str) -> list[object]:
    team = write(
        f"{name}.yaml",
        team_yaml(roles=("alpha", "beta"), max_turns=2, tools={"alpha": ["peer.slow"]}) + "mcp:\n" + server,
    )
    script = write(
        f"{name}-script.yaml",
        "roles:\n  alpha:\n    - {tool: peer__slow, args: {seconds: 60}}\n  beta: ['carried on']\n",
    )
    conv = Conversation(team, model=f"scripted:{script}")
    try:
        return [ev async for ev in conv.start("Take your time")]
    finally:
        await conv.close()


async def test_a_60_s_call_succeeds_within_90_s_and_fails_cleanly_at_30_s(
    write: Write, http_url: str
) -> None:
    cases = {
        (transport, limit): server_yaml(transport, http_url, timeout_s=limit)
        for transport in ("stdio", "http")
        for limit in (90, 30)
    }
    outcomes = await asyncio.gather(
        *(_slow_call(write, f"{t}-{limit}", server) for (t, limit), server in cases.items())
    )
    for (transport, limit), events in zip(cases, outcomes, strict=True):
        result = next(e for e in events if isinstance(e, ToolResultEvent))
        if limit == 90:
            assert (result.content, result.is_error) == ("slept 60 s", False), (transport, result)
        else:
            assert result.is_error, (transport, result)
            assert "MCP server 'peer': slow timed out after 30 s" in result.content, (
                transport,
                result.content,
            )
        # The run goes on after the tool's answer, error or not: the next role speaks, and the run ends normally.
        said = [e.source for e in events if isinstance(e, MessageEvent)]
        assert said == ["alpha", "beta"], (transport, limit, said)
        end = events[-1]
        assert isinstance(end, RunResult) and end.stop_reason == "max_turns", (transport, limit, end)
