"""MCP servers declared in a team file: their tools reach the roles granted them, and only those, behind
the same approval gate and audit as built-in tools."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import mcp.client.stdio  # noqa: F401  (imported while collecting: its default stderr is then a stream open all session)
import pytest
from _support import team_yaml

from parley import Conversation, TeamFileError, load_team_file
from parley.cli import main
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


@app.tool()
def stamp(path: str) -> str:
    """Write a file (a call with an effect a test can see)."""
    with open(path, "w") as f:
        f.write("stamped")
    return "stamped " + path


if __name__ == "__main__":
    app.run()
'''


@pytest.fixture(autouse=True)
def _trusted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """These team files start a server program: the operator trusts the test's folder (see catalog.check_trusted)."""
    monkeypatch.setenv("PARLEY_TRUSTED_TEAMS", str(tmp_path))


def _team(write: Write, grants: str, extra: str = "") -> Path:
    server = write("calc_server.py", SERVER)
    mcp = f"mcp:\n  - name: calc\n    command: {sys.executable}\n    args: [{server}]\n"
    return write(
        "team.yaml", team_yaml(roles=("alpha", "beta"), max_turns=2, tools={"alpha": [grants]}) + mcp + extra
    )


async def test_a_granted_mcp_tool_runs_on_the_server(write: Write) -> None:
    team = _team(write, "calc.add")
    script = write(
        "s.yaml", "roles:\n  alpha:\n    - tool: calc__add\n      args: {a: 2, b: 3}\n  beta: ['five']\n"
    )
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
    path = write(
        "team.yaml",
        team_yaml(roles=("alpha",), tools={"alpha": ["cacl.add"]})
        + "mcp:\n  - {name: calc, command: python}\n",
    )
    with pytest.raises(
        TeamFileError, match=r"unknown MCP server 'cacl' in 'cacl.add' \(did you mean 'calc'\?\)"
    ):
        load_team_file(path, tool_names=[])
    bad = write("bad.yaml", team_yaml(roles=("alpha",)) + "mcp:\n  - {name: calc}\n")
    with pytest.raises(TeamFileError, match="give either command"):
        load_team_file(bad, tool_names=[])


def _stamp_script(write: Write, target: Path) -> Path:
    return write(
        "s.yaml",
        f"roles:\n  alpha:\n    - tool: calc__stamp\n      args: {{path: '{target}'}}\n  beta: ['checked']\n",
    )


def _saved_as(stderr: str) -> str:
    return stderr.split("saved as ", 1)[1].split()[0]


@pytest.mark.parametrize("rule", ["calc.stamp", "calc.*"])
def test_an_mcp_tool_that_needs_approval_waits_for_it_and_is_audited(
    write: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str], rule: str
) -> None:
    team = _team(write, "calc.*", f"approvals: {{{rule}: required}}\n")
    target = tmp_path / "stamped.txt"
    script = _stamp_script(write, target)
    assert main(["run", str(team), "Stamp it", "--model", f"scripted:{script}", "--approve", "none"]) == 0
    out, err = capsys.readouterr()
    assert "calc.stamp denied by policy" in out, out
    assert not target.exists(), "a denied MCP call reached the server"
    assert main(["audit", _saved_as(err), "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["what"], r["decision"], r["detail"]["tool"]) for r in rows if "tool" in r["detail"]] == [
        ("approval requested", "waiting", "calc.stamp"),
        ("deny", "denied", "calc.stamp"),
    ]

    # The command line's rules know MCP tools by the same names, wildcards included.
    assert main(["run", str(team), "Stamp it", "--model", f"scripted:{script}", "--approve", "calc.*"]) == 0
    assert "calc.stamp approved by policy" in capsys.readouterr().out
    assert target.read_text() == "stamped"


def test_an_mcp_tool_without_a_rule_runs_without_asking(
    write: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team = _team(write, "calc.stamp", "approvals: {calc.add: required}\n")
    target = tmp_path / "stamped.txt"
    assert (
        main(
            [
                "run",
                str(team),
                "Stamp it",
                "--model",
                f"scripted:{_stamp_script(write, target)}",
                "--no-save",
                "--approve",
                "none",
            ]
        )
        == 0
    )
    assert "approv" not in capsys.readouterr().out
    assert target.read_text() == "stamped"


def test_a_suite_answers_mcp_approvals_by_server_wildcard(
    write: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _team(write, "calc.*", "approvals: {calc.*: required}\n")
    target = tmp_path / "stamped.txt"
    _stamp_script(write, target)
    suite = write(
        "suite.yaml",
        """
        suite: mcp
        defaults: {team: team.yaml, model: scripted:s.yaml}
        scenarios:
          - name: denied
            task: Stamp it
            human: [{approval: calc.*, decision: deny, reason: not today}]
            expect: [{tool_called: calc__stamp}]
    """,
    )
    out = tmp_path / "out"
    assert main(["eval", str(suite), "--out", str(out), "--no-save"]) == 0
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert record["passed"] and record["human"] == ["turn 1: calc.stamp denied"], record
    assert not target.exists()


async def test_approvals_naming_a_tool_the_server_lacks_are_an_error(write: Write) -> None:
    team = _team(write, "calc.add", "approvals: {calc.stmap: required}\n")
    script = write("s.yaml", "roles:\n  alpha: ['x']\n")
    events = [ev async for ev in Conversation(team, model=f"scripted:{script}").start("Add")]
    assert (
        isinstance(events[-1], RunResult)
        and "approvals names calc.stmap, but MCP server 'calc' offers: add, shout, stamp" in events[-1].detail
    )


def test_approval_keys_name_a_declared_server_and_a_tool(write: Write) -> None:
    path = write(
        "team.yaml",
        team_yaml(roles=("alpha",))
        + "mcp:\n  - {name: calc, command: python}\n"
        + "approvals:\n  clac.*: required\n  calc.: never\n",
    )
    with pytest.raises(TeamFileError) as err:
        load_team_file(path, tool_names=[])
    text = str(err.value)
    assert "team.yaml:12" in text and "unknown MCP server 'clac' in 'clac.*' (did you mean 'calc'?)" in text
    assert "team.yaml:13" in text and "'calc.' names no tool: write SERVER.TOOL or SERVER.*" in text


def test_parley_tools_lists_each_teams_mcp_servers_and_what_they_offer(
    write: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _team(
        write,
        "calc.add",
        "  - name: remote\n    url: http://ann:pw-4711@127.0.0.1:9/mcp?key=k-4711\n    timeout_s: 5\n"
        "    headers: {Authorization: 'Bearer ${REMOTE_TOKEN}'}\n",
    )
    assert main(["tools", "--teams", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    server = tmp_path / "calc_server.py"
    assert f"test-team.calc  stdio  {sys.executable} {server}  timeout 60 s\n" in out
    assert (
        "test-team.remote  http  http://127.0.0.1:9/mcp?key=…  timeout 5 s  headers: Authorization\n" in out
    )
    assert "REMOTE_TOKEN" not in out and "add:" not in out  # no values of headers; nothing started
    assert "4711" not in out  # nor a password or a query's values in the URL

    assert main(["tools", "--teams", str(tmp_path), "--mcp"]) == 0
    out = capsys.readouterr().out
    assert "    add: Add two whole numbers.\n    shout: Upper-case some text.\n" in out
    assert (
        "    could not start: MCP server 'remote': header Authorization uses ${REMOTE_TOKEN}, but the environment "
        "variable REMOTE_TOKEN is not set" in out
    )


def test_a_hostile_servers_binary_results_are_described_not_trusted(tmp_path: Path) -> None:
    import base64

    from mcp import types

    from parley._mcp_result import MAX_BINARY, convert

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x03\0\0\0\x02" + b"\0" * 20).decode()
    result = types.CallToolResult(
        content=[
            types.ImageContent(
                type="image", data=base64.b64encode(b"x" * (MAX_BINARY + 1)).decode(), mimeType="image/png"
            ),
            types.ImageContent(type="image", data="not base64!", mimeType="image/png"),
            types.ImageContent(type="image", data=png, mimeType="image/png"),
        ]
    )
    out = convert(result, limit=10_000, folder=tmp_path, stem="../../outside")
    assert out.text.splitlines() == [
        f"[image: image/png, about {MAX_BINARY + 1:,} bytes, too large to keep (the limit is {MAX_BINARY:,})]",
        "[image: image/png, not valid base64; dropped]",
        "[image: image/png, 3×2, saved as ..-..-outside-1.png]",
    ]
    assert [p.parent for p in out.files] == [tmp_path]  # the server's names never choose the folder
