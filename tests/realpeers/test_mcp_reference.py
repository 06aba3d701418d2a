"""parley against MCP servers nobody here wrote: `mcp-server-time` from PyPI (a dev dependency) and
`@modelcontextprotocol/server-everything` from npm (installed once into a cache folder; skipped with the
reason where Node or the npm registry is missing). Driven through a team's role, as a user's team would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _support import team_yaml

from parley import Conversation
from parley.events import FileEvent, RunResult, ToolProgressEvent, ToolResultEvent

Write = Callable[[str, str], Path]
EVERYTHING = "@modelcontextprotocol/server-everything@2026.8.31"
NPM_CACHE = Path(os.environ.get("PARLEY_TEST_NPM_DIR", Path.home() / ".cache" / "parley-tests" / "npm"))
"""Where the npm server is installed once, and found by later test sessions."""


@pytest.fixture(autouse=True)
def _trusted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PARLEY_TRUSTED_TEAMS", str(tmp_path))


@pytest.fixture(scope="session")
def everything() -> Path:
    """The entry point of server-everything, installed with npm into NPM_CACHE on first use."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js (node and npm) is not installed: the npm MCP server cannot run here")
    entry = NPM_CACHE / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
    if not entry.is_file():
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(NPM_CACHE),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                EVERYTHING,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0 or not entry.is_file():
            pytest.skip(f"npm could not install {EVERYTHING}: {(done.stderr or done.stdout).strip()[-500:]}")
    return entry


async def _run(write: Write, server: str, calls: list[str]) -> list[Any]:
    team = write(
        "team.yaml",
        team_yaml(roles=("alpha", "beta"), max_turns=2, tools={"alpha": ["ref.*"]}) + "mcp:\n" + server,
    )
    script = write(
        "s.yaml",
        "roles:\n  alpha:\n    - calls:\n"
        + "".join(f"        - {c}\n" for c in calls)
        + "  beta: ['noted']\n",
    )
    conv = Conversation(team, model=f"scripted:{script}")
    try:
        return [ev async for ev in conv.start("Use the reference server")]
    finally:
        await conv.close()


def _by_tool(events: list[Any]) -> dict[str, ToolResultEvent]:
    return {e.name: e for e in events if isinstance(e, ToolResultEvent)}


async def test_the_reference_time_server_from_pypi(write: Write) -> None:
    pytest.importorskip("mcp_server_time", reason="mcp-server-time (a dev dependency) is not installed")
    server = f"  - name: ref\n    command: {sys.executable}\n    args: [-m, mcp_server_time, --local-timezone, UTC]\n"
    events = await _run(
        write,
        server,
        [
            "{tool: ref__convert_time, args: {source_timezone: UTC, time: '12:00', target_timezone: Asia/Tokyo}}"
        ],
    )
    result = _by_tool(events)["ref__convert_time"]
    assert not result.is_error and '"datetime": "' in result.content and "T21:00:00+09:00" in result.content
    assert not result.content.startswith('[{"type"'), "the text block reached the role as raw JSON"
    assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "max_turns"


async def test_the_everything_server_from_npm(write: Write, everything: Path) -> None:
    server = f"  - name: ref\n    command: node\n    args: [{everything}, stdio]\n    timeout_s: 30\n"
    events = await _run(
        write,
        server,
        [
            "{tool: ref__get-sum, args: {a: 2, b: 3}}",
            "{tool: ref__get-tiny-image}",
            "{tool: ref__trigger-long-running-operation, args: {duration: 1, steps: 2}}",
            "{tool: ref__get-resource-reference, args: {resourceType: Text, resourceId: 1}}",
            "{tool: ref__simulate-research-query, args: {topic: bees}}",  # a tool that must run as an MCP task
        ],
    )
    results = _by_tool(events)
    assert not any(r.is_error for r in results.values()), results
    assert results["ref__get-sum"].content == "The sum of 2 and 3 is 5."
    image = next(e for e in events if isinstance(e, FileEvent))
    assert image.mime == "image/png" and image.tool == "ref.get-tiny-image"
    assert results["ref__get-tiny-image"].content == (
        f"Here's the image you requested:\n[image: image/png, 20×20, saved as {image.name}]\n"
        "The image above is the MCP logo."
    )
    assert [
        (e.progress, e.total)
        for e in events
        if isinstance(e, ToolProgressEvent) and e.name == "ref.trigger-long-running-operation"
    ] == [(1, 2), (2, 2)]
    assert (
        "[resource demo://resource/dynamic/text/1]\nResource 1:"
        in results["ref__get-resource-reference"].content
    )
    assert results["ref__simulate-research-query"].content.startswith("# Research Report: bees")
