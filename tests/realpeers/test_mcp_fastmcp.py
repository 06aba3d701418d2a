"""parley against a real MCP server (the `mcp` package's FastMCP, our own test server), over stdio and
streamable HTTP, through the production path: a team whose role is granted the server's tools, run by the
scripted model."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import team_yaml
from autogen_core import Image
from autogen_core.models import FunctionExecutionResultMessage
from mcp_peers import AUTH, free_port, http_server, server_yaml

from parley import Conversation
from parley.cli import main
from parley.events import (
    FileEvent,
    NoticeEvent,
    RunResult,
    ToolProgressEvent,
    ToolResultEvent,
)

Write = Callable[[str, str], Path]


@pytest.fixture(autouse=True)
def _trusted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """These team files start a server program or reach a URL: the operator trusts the test's folder."""
    monkeypatch.setenv("PARLEY_TRUSTED_TEAMS", str(tmp_path))


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    with http_server({"EXPECTED_AUTH": AUTH}) as url:
        yield url


@pytest.fixture(params=["stdio", "http"])
def declared(request: pytest.FixtureRequest) -> Callable[..., str]:
    """The test server's `mcp:` entry, over each transport."""
    url = request.getfixturevalue("http_url") if request.param == "http" else ""
    return lambda **kw: server_yaml(request.param, url, **kw)


def _team(
    write: Write, server: str, *, roles: tuple[str, ...] = ("alpha", "beta"), max_turns: int = 2
) -> Path:
    return write(
        "team.yaml",
        team_yaml(roles=roles, max_turns=max_turns, tools={"alpha": ["peer.*"]}) + "mcp:\n" + server,
    )


def _script(write: Write, alpha: list[str], beta: tuple[str, ...] = ("noted",), name: str = "s.yaml") -> str:
    lines = ["roles:", "  alpha:", *(f"    - {a}" for a in alpha)]
    if beta:
        lines += ["  beta:", *(f"    - {b!r}" for b in beta)]
    return f"scripted:{write(name, chr(10).join(lines) + chr(10))}"


async def _events(conv: Conversation, task: str) -> list[Any]:
    return [ev async for ev in conv.start(task)]


def _results(events: list[Any]) -> list[ToolResultEvent]:
    return [e for e in events if isinstance(e, ToolResultEvent)]


async def test_a_servers_state_lasts_the_whole_conversation(
    write: Write, declared: Callable[..., str]
) -> None:
    conv = Conversation(
        _team(write, declared(), roles=("alpha",)),
        model=_script(write, ["{tool: peer__count}"] * 3 + ["done"], beta=()),
    )
    try:
        first = await _events(conv, "Count")
        second = await _events(conv, "Count on")
    finally:
        await conv.close()
    # One session across calls, turns and runs: the server's counter goes on, and its answer is plain text.
    assert [r.content for r in _results(first) + _results(second)] == ["1", "2", "3"]
    assert isinstance(second[-1], RunResult) and second[-1].stop_reason == "max_turns"


async def test_results_are_text_files_and_resources_never_json_blocks(
    write: Write, declared: Callable[..., str]
) -> None:
    server = declared(extra="    max_result_chars: 1000\n")
    script = _script(
        write,
        [
            "{calls: [{tool: peer__picture, args: {width: 64, height: 48}}, "
            "{tool: peer__big, args: {chars: 200000}}, {tool: peer__document}]}"
        ],
    )
    conv = Conversation(_team(write, server), model=script)
    try:
        events = await _events(conv, "Fetch")
    finally:
        await conv.close()
    by_tool = {r.name: r.content for r in _results(events)}
    picture = next(e for e in events if isinstance(e, FileEvent))
    assert picture.mime == "image/png" and picture.tool == "peer.picture" and picture.size > 0
    assert by_tool["peer__picture"] == f"[image: image/png, 64×48, saved as {Path(picture.path).name}]"
    assert by_tool["peer__big"].startswith("0123456789" * 100)
    assert "the result has 200,000 characters; only the first 1,000 are shown" in by_tool["peer__big"]
    assert len(by_tool["peer__big"]) < 1200
    assert by_tool["peer__document"] == "here it is\n[resource memo://notes/1]\nthe memo's text"
    assert not any('"type"' in c for c in by_tool.values())


async def test_progress_and_log_lines_are_shown_while_the_call_runs(
    write: Write, declared: Callable[..., str]
) -> None:
    # One call at a time: a log line names no request, so it goes to the server's latest running call.
    script = _script(
        write,
        ["{tool: peer__steps, args: {n: 3}}", "{tool: peer__chatty, args: {message: disk almost full}}"],
        beta=("one", "two"),
    )
    conv = Conversation(_team(write, declared(), max_turns=4), model=script)
    try:
        events = await _events(conv, "Work")
    finally:
        await conv.close()
    progress = [e for e in events if isinstance(e, ToolProgressEvent)]
    steps = [(e.progress, e.total, e.content) for e in progress if e.name == "peer.steps"]
    assert steps == [(1, 3, "step 1 of 3"), (2, 3, "step 2 of 3"), (3, 3, "step 3 of 3")]
    assert [(e.level, e.content, e.source) for e in progress if e.name == "peer.chatty"] == [
        ("warning", "disk almost full", "alpha")
    ]
    done = events.index(next(r for r in _results(events) if r.name == "peer__steps"))
    assert all(events.index(e) < done for e in progress if e.name == "peer.steps")


async def test_a_server_that_dies_is_started_again_once_with_a_notice(write: Write) -> None:
    script = _script(
        write,
        ["{tool: peer__count}", "{tool: peer__crash}", "{tool: peer__count}"],
        beta=("one", "two", "three"),
    )
    conv = Conversation(_team(write, server_yaml("stdio"), max_turns=6), model=script)
    try:
        events = await _events(conv, "Count, crash, count")
    finally:
        await conv.close()
    results = _results(events)
    assert results[0].content == "1"
    assert results[1].is_error and "the server process exited" in results[1].content
    assert "crashing on purpose" in results[1].content, "the error quotes the tail of the server's stderr"
    notice = next(e for e in events if isinstance(e, NoticeEvent) and "MCP server 'peer'" in e.content)
    assert "starting it again" in notice.content
    assert results[2].content == "1" and not results[2].is_error  # a new process: its state starts afresh
    assert events.index(notice) < events.index(results[2])
    assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "max_turns"


async def test_an_unreachable_server_is_an_error_that_names_the_cause(write: Write) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    conv = Conversation(_team(write, f"  - name: peer\n    url: {url}\n"), model=_script(write, ["x"]))
    first = await _events(conv, "Anything")
    again = await _events(conv, "Try again")  # each run tries afresh: it never ran, so it is no restart
    await conv.close()
    for events in (first, again):
        result = events[-1]
        assert isinstance(result, RunResult) and result.stop_reason == "error"
        assert f"MCP server 'peer' could not be reached: connection refused at {url}" in result.detail
        assert "TaskGroup" not in result.detail
        assert not [e for e in events if isinstance(e, NoticeEvent) and "MCP" in e.content]


async def test_a_server_that_exits_at_start_is_an_error_with_its_stderr(write: Write) -> None:
    code = 'import sys; sys.stderr.write("no licence key found"); sys.exit(2)'
    server = f"  - name: peer\n    command: {sys.executable}\n    args: ['-c', '{code}']\n"
    conv = Conversation(_team(write, server), model=_script(write, ["x"]))
    events = await _events(conv, "Anything")
    await conv.close()
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "error"
    assert "MCP server 'peer' could not be reached: the server process exited" in result.detail
    assert result.detail.endswith("its stderr ends with:\nno licence key found")


async def test_closing_the_conversation_ends_a_stdio_server(write: Write) -> None:
    conv = Conversation(
        _team(write, server_yaml("stdio"), roles=("alpha",)),
        model=_script(write, ["{tool: peer__pid}", "done"], beta=()),
    )
    pid = int(_results(await _events(conv, "Who are you"))[0].content)
    os.kill(pid, 0)  # alive between runs, waiting for the next call
    await conv.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_page_leaving_an_idle_web_chat_ends_its_stdio_server_which_starts_again_on_the_next_call(
    write: Write,
) -> None:
    from parley.web._chat import ChatSession

    conv = Conversation(
        _team(write, server_yaml("stdio"), roles=("alpha",)),
        model=_script(write, ["{tool: peer__pid}", "done", "{tool: peer__pid}", "done"], beta=()),
    )
    try:
        first = int(_results(await _events(conv, "Who are you"))[0].content)
        await ChatSession(conv, "local").page_left()  # Chainlit's on_chat_end: the tab was closed
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)
        second = int(_results(await _events(conv, "And now?"))[0].content)
        assert second != first
        os.kill(second, 0)
    finally:
        await conv.close()


def test_http_headers_take_secrets_from_the_environment_and_never_store_them(
    write: Write,
    http_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = AUTH.split()[1]
    server = (
        f"  - name: peer\n    url: {http_url}\n    headers: {{Authorization: 'Bearer ${{PEER_TOKEN}}'}}\n"
    )
    team = _team(write, server)
    script = _script(write, ["{tool: peer__whoami}"])
    caplog.set_level(logging.DEBUG)

    monkeypatch.delenv("PEER_TOKEN", raising=False)
    assert main(["run", str(team), "Who am I", "--model", script, "--json"]) != 0
    out, err = capsys.readouterr()
    assert (
        "header Authorization uses ${PEER_TOKEN}, but the environment variable PEER_TOKEN is not set"
        in out + err
    )

    monkeypatch.setenv("PEER_TOKEN", secret)
    assert main(["run", str(team), "Who am I", "--model", script, "--json"]) == 0
    out, err = capsys.readouterr()
    assert '"content":"authorized"' in out.replace(" ", "")  # the header reached the server
    assert secret not in out + err + caplog.text
    data = Path(os.environ["PARLEY_DATA_DIR"])
    stored = [p for p in data.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert stored == [], "a header's value reached the store"
    assert any(b"Who am I" in p.read_bytes() for p in data.rglob("*") if p.is_file()), (
        "the run was not stored there: the search proves nothing"
    )


def test_the_command_line_shows_a_tools_progress_and_log_lines(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    team = _team(write, server_yaml("stdio"), max_turns=4)
    script = _script(
        write,
        ["{tool: peer__steps, args: {n: 2}}", "{tool: peer__chatty, args: {message: cache cold}}"],
        beta=("one", "two"),
    )
    assert main(["run", str(team), "Work", "--model", script, "--no-save"]) == 0
    out = capsys.readouterr().out
    assert "    … peer.steps: 1/2 step 1 of 2\n    … peer.steps: 2/2 step 2 of 2\n" in out
    assert out.index("… peer.steps: 2/2") < out.index("← peer__steps: 2 steps done")
    assert "    … peer.chatty: [warning] cache cold\n" in out


async def test_a_sub_team_shares_the_conversations_sessions(write: Write) -> None:
    server = "mcp:\n" + server_yaml("stdio")
    write(
        "sub.yaml",
        team_yaml("sequential", roles=("counter",), tools={"counter": ["peer.count"]}).replace(
            "name: test-team", "name: desk"
        )
        + server,
    )
    team = write(
        "team.yaml",
        f"""
        name: office
        pattern: hierarchical
        hierarchical: {{manager: chief}}
        roles:
          - {{name: chief, prompt: You run the office., tools: [peer.count]}}
          - {{name: desk, team: sub.yaml, description: Counts}}
        termination: {{max_turns: 6}}
        {server.replace(chr(10), chr(10) + "        ")}
    """,
    )
    script = write(
        "s.yaml",
        """
        roles:
          chief:
            - tool: peer__count
            - tool: desk
              args: {task: "Count once more"}
            - tool: peer__count
            - "Three. Done"
          counter: [{tool: peer__count}]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    try:
        events = await _events(conv, "Count")
    finally:
        await conv.close()
    counted = [(r.source, r.content) for r in _results(events) if r.name == "peer__count"]
    assert counted == [("chief", "1"), ("counter", "2"), ("chief", "3")]


@pytest.mark.parametrize("vision", [True, False])
async def test_a_model_that_accepts_images_is_shown_the_picture(
    write: Write, monkeypatch: pytest.MonkeyPatch, vision: bool
) -> None:
    from parley.engine.autogen.models import ScriptedClient

    monkeypatch.setattr(ScriptedClient, "info", {**ScriptedClient.info, "vision": vision})
    script = _script(write, ["{tool: peer__picture, args: {width: 32, height: 16}}", "a red picture"])
    conv = Conversation(_team(write, server_yaml("stdio"), max_turns=3), model=script)
    try:
        events = await _events(conv, "Look")
    finally:
        await conv.close()
    assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "max_turns"
    seen = [c.messages for c in conv.pool.scripts[0].calls if c.who == "alpha"][
        1
    ]  # its turn after the tool's
    pictures = [
        part for m in seen if isinstance(m.content, list) for part in m.content if isinstance(part, Image)
    ]
    assert [(p.image.width, p.image.height) for p in pictures] == ([(32, 16)] if vision else [])
    described = [r.content for m in seen if isinstance(m, FunctionExecutionResultMessage) for r in m.content]
    assert described == ["[image: image/png, 32×16, saved as peer-picture-1.png]"]


async def test_a_server_that_dies_twice_is_not_started_a_third_time(write: Write) -> None:
    script = _script(
        write,
        ["{tool: peer__crash}", "{tool: peer__crash}", "{tool: peer__count}"],
        beta=("one", "two", "three"),
    )
    conv = Conversation(_team(write, server_yaml("stdio"), max_turns=6), model=script)
    try:
        events = await _events(conv, "Crash, crash, count")
    finally:
        await conv.close()
    results = _results(events)
    assert [r.is_error for r in results] == [True, True, True]
    assert "parley restarts a server only once per conversation" in results[2].content
    assert "MCP server 'peer' stopped again (the server process exited" in results[2].content
    assert len([e for e in events if isinstance(e, NoticeEvent) and "starting it again" in e.content]) == 1
    assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "max_turns"


def test_an_unreachable_server_ends_the_run_with_its_cause_and_the_run_is_kept(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    team = _team(write, f"  - name: peer\n    url: {url}\n")
    assert main(["run", str(team), "Look it up", "--model", _script(write, ["x"])]) == 1
    out, err = capsys.readouterr()
    assert (
        f"MCP server 'peer' could not be reached: connection refused at {url} (is the server running?)" in err
    )
    assert "TaskGroup" not in out + err and "Traceback" not in out + err
    assert "1 message kept for the next run" in out  # the task waits for the next run, in the stored thread
    thread = err.split("saved as ", 1)[1].split()[0]
    assert main(["audit", thread, "--format", "jsonl"]) == 0
