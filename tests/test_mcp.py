"""MCP servers declared in a team file: their tools reach the roles granted them, and only those."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import team_yaml

from parley import Conversation, TeamFileError, load_team_file
from parley.events import MessageEvent, RunResult, ToolResultEvent

Write = Callable[[str, str], Path]
SERVER = '''
from mcp.server.fastmcp import FastMCP

app = FastMCP("calc")


@app.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@app.tool()
def shout(text: str) -> str:
    """Upper-case some text."""
    return text.upper()


if __name__ == "__main__":
    app.run()
'''


def _team(write: Write, grants: str) -> Path:
    server = write("calc_server.py", SERVER)
    mcp = f"mcp:\n  - name: calc\n    command: {sys.executable}\n    args: [{server}]\n"
    return write("team.yaml", team_yaml(roles=("alpha", "beta"), max_turns=2, tools={"alpha": [grants]}) + mcp)


async def test_a_granted_mcp_tool_runs_on_the_server(write: Write) -> None:
    team = _team(write, "calc.add")
    script = write("s.yaml", "roles:\n  alpha:\n    - tool: calc__add\n      args: {a: 2, b: 3}\n  beta: ['five']\n")
    conv = Conversation(team, model=f"scripted:{script}")
    events = [ev async for ev in conv.start("Add")]
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.name == "calc__add" and "5" in result.content and not result.is_error
    assert [e.source for e in events if isinstance(e, MessageEvent)] == ["alpha", "beta"]


async def test_grants_are_checked_against_what_the_server_offers(write: Write) -> None:
    team = _team(write, "calc.sub")
    script = write("s.yaml", "roles:\n  alpha: ['x']\n")
    conv = Conversation(team, model=f"scripted:{script}")
    events = [ev async for ev in conv.start("Subtract")]
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "error"
    assert "granted calc.sub, but MCP server 'calc' offers: add, shout" in result.detail


def test_an_undeclared_server_is_a_team_file_error(write: Write) -> None:
    path = write("team.yaml", team_yaml(roles=("alpha",), tools={"alpha": ["cacl.add"]})
                 + "mcp:\n  - {name: calc, command: python}\n")
    with pytest.raises(TeamFileError, match=r"unknown MCP server 'cacl' in 'cacl.add' \(did you mean 'calc'\?\)"):
        load_team_file(path, tool_names=[])
    bad = write("bad.yaml", team_yaml(roles=("alpha",)) + "mcp:\n  - {name: calc}\n")
    with pytest.raises(TeamFileError, match="give either command"):
        load_team_file(bad, tool_names=[])
