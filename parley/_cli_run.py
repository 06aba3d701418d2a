"""The CLI's commands that load the engine: `parley run`, `parley teams` and `parley tools` (see cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ._mcp_session import McpCallError, McpConnection, describe
from ._outcome import ended_in_words
from ._proc import freeze_startup_objects
from ._render import Renderer, visible
from ._terminal import TerminalHuman, read_stdin
from .catalog import TeamEntry, check_trusted, discover_teams, programs
from .cli import (
    EXIT_ERROR,
    EXIT_ESCALATED,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_STOPPED,
    EXIT_TIMEOUT,
    EXIT_TOKENS,
    stdout_gone,
)
from .conversation import Conversation
from .errors import ConfigError, TeamFileError
from .events import RunResult
from .host import ASK_HUMAN
from .human import decide
from .run import Run
from .spec import McpServerSpec, TeamSpec, load_team_file
from .store import open_for_command, run_owner
from .tools import default_registry

_EXIT_BY_REASON = {
    "max_tokens": EXIT_TOKENS,
    "timeout": EXIT_TIMEOUT,
    "stopped": EXIT_STOPPED,
    "error": EXIT_ERROR,
    "escalation": EXIT_ESCALATED,
    "loop": EXIT_ERROR,
}


def list_teams(extra: list[str]) -> int:
    entries = discover_teams(extra)
    if not entries:
        print("no teams found (looked in teams/, PARLEY_TEAMS and --teams)")
        return EXIT_OK
    width = max(len(e.name) for e in entries)
    for e in entries:
        if e.spec is None:
            first, *rest = (e.error or "").splitlines()
            print(visible(f"{e.name:<{width}}  BROKEN  {first}"))
            for line in rest:
                print(visible(f"{'':<{width}}          {line}"))
        else:
            roles = ", ".join(e.spec.role_names)
            starts = programs(e.spec)  # team files are code: say which ones start programs
            print(
                visible(
                    f"{e.name:<{width}}  {e.spec.pattern:<12}  [{roles}]  {e.spec.description}"
                    + (f"  (starts programs: {', '.join(starts)})" if starts else "")
                )
            )
    return EXIT_OK


def validate(files: list[str]) -> int:
    reg = default_registry()
    status = EXIT_OK
    for f in files:
        try:
            spec = load_team_file(Path(f), tool_names=reg.names(), display=f, check_names=sorted(reg.checks))
            print(f"{f}: ok (team {spec.name}, {spec.pattern}, {len(spec.roles)} roles)")
        except TeamFileError as exc:
            print(visible(str(exc)))
            status = EXIT_ERROR
    return status


def list_tools(teams_dirs: Sequence[str] = (), *, start_mcp: bool = False) -> int:
    reg = default_registry()
    entries = discover_teams(teams_dirs)
    granted: dict[str, list[str]] = {}
    for e in entries:
        for role in e.spec.roles if e.spec else []:
            for t in role.tools:
                granted.setdefault(t, []).append(f"{e.name}.{role.name}")
    width = max((len(n) for n in reg.tools), default=4)
    rows = [
        (name, reg.get(name).family, reg.get(name).approval, reg.get(name).description)
        for name in reg.names()
    ]
    rows.append(
        (ASK_HUMAN, "built in", False, "Ask the human a clarifying question; the run waits for the answer.")
    )
    for name, family, approval, description in sorted(rows):
        print(
            f"{name:<{width}}  {family:<10}  {'approval' if approval else '-':<8}  {description.splitlines()[0]}"
        )
        print(f"{'':<{width}}  granted to: {', '.join(granted.get(name, [])) or '(no shipped team)'}")
    for err in reg.errors:
        print(f"BROKEN  {err}")
    if reg.checks:
        print("\nvalidation checks (validate: {check: NAME}):")
        for check in sorted(reg.checks.values(), key=lambda c: c.name):
            print(f"{check.name:<{width}}  {check.description.splitlines()[0] if check.description else ''}")
    _list_mcp_servers(entries, teams_dirs, start_mcp=start_mcp)
    return EXIT_OK


def _list_mcp_servers(entries: Sequence[TeamEntry], teams_dirs: Sequence[str], *, start_mcp: bool) -> None:
    servers = [(e.name, e.spec, m) for e in entries if e.spec is not None for m in e.spec.mcp]
    if servers:
        print("\nMCP servers (grant SERVER.TOOL or SERVER.*):")
    for team, spec, server in servers:
        how = "stdio" if server.command is not None else "http"
        print(
            f"{team}.{server.name}  {how}  {visible(describe(server), one_line=True)}  "
            f"timeout {server.timeout_s:g} s"
            + (f"  headers: {', '.join(server.headers)}" if server.headers else "")
        )
        if start_mcp:
            for line in asyncio.run(_offered(spec, server, teams_dirs)):
                print(f"    {visible(line, one_line=True)}")


async def _offered(team: TeamSpec, server: McpServerSpec, teams_dirs: Sequence[str]) -> list[str]:
    """What one team's MCP server offers, one line a tool; or why it could not be asked."""
    try:
        check_trusted(team, teams_dirs)
    except ConfigError as exc:
        return [f"not started: {exc}"]
    conn = McpConnection(server)
    try:
        await conn.session()
    except (McpCallError, ConfigError) as exc:
        return [f"could not start: {exc}"]
    finally:
        await conn.close()
    return [
        f"{t.name}: {(t.description or '').strip().splitlines()[0] if t.description else '(no description)'}"
        for t in conn.tools.values()
    ] or ["(no tools)"]


async def run_command(args: argparse.Namespace) -> int:
    approvals = _approval_rules(args.approve, args.deny)
    conv = Conversation(
        args.team,
        model=args.model,
        max_turns=args.max_turns,
        max_tokens=args.max_tokens,
        timeout_s=args.timeout,
        teams_dirs=args.teams,
        approvals=approvals,
    )
    store = None if args.no_save else await open_for_command()
    freeze_startup_objects()
    try:
        if store is not None:
            await conv.save_to(store, run_owner(), args.task[:80])
        run = conv.start(args.task)
        try:
            return await drive(run, args)
        finally:
            # Only a run that ended, with every event written, is "saved"; a failed write said so already.
            if store is not None and run.result is not None and not run.unsaved:
                print(
                    f"parley: saved as {conv.thread_id} (`parley audit {conv.thread_id}` shows its decisions)",
                    file=sys.stderr,
                )
    finally:
        await conv.close()
        if store is not None:
            await store.close()


async def drive(run: Run, args: argparse.Namespace) -> int:
    interactive = not args.json and sys.stdin.isatty()
    human = TerminalHuman(run, interactive=interactive, answer=args.answer, on_escalation=args.on_escalation)
    loop = asyncio.get_running_loop()
    presses = 0

    def on_sigint() -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            os._exit(EXIT_STOPPED)
        run.stop()

    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    if interactive:
        read_stdin(loop, run)
        print(
            "(type a message and Enter to join the conversation · /i TEXT interrupts · /stop or Ctrl-C stops)",
            file=sys.stderr,
        )
    renderer = Renderer()
    result: RunResult | None = None
    reader_gone = False
    try:
        async for ev in run:
            if not reader_gone:
                try:
                    if args.json:
                        if ev.type != "chunk" or args.chunks:
                            print(ev.model_dump_json(exclude={"ts"}), flush=True)
                    else:
                        renderer.show(ev)
                except BrokenPipeError:
                    # Nobody reads the output any more (`| head`): stop the run, let it end and be saved, quietly.
                    reader_gone = True
                    stdout_gone()
                    run.stop()
            decide(human, run, ev)
            if isinstance(ev, RunResult):
                result = ev
    finally:
        if interactive:
            loop.remove_reader(sys.stdin.fileno())
    assert result is not None
    if reader_gone:
        return EXIT_PIPE
    if not result.ok:  # the detail can quote a model's or a tool's error text
        print(f"parley: {visible(ended_in_words(result.stop_reason, result.detail))}", file=sys.stderr)
    return EXIT_OK if result.ok else _EXIT_BY_REASON.get(result.stop_reason, EXIT_ERROR)


def _approval_rules(approve: list[str], deny: list[str]) -> dict[str, bool]:
    """--approve all|none|TOOL,... and --deny TOOL,... as {tool or '*': approved}."""
    rules: dict[str, bool] = {}
    for value in approve:
        for item in filter(None, (v.strip() for v in value.split(","))):
            if item == "all":
                rules["*"] = True
            elif item == "none":
                rules["*"] = False
            else:
                rules[item] = True
    for value in deny:
        rules.update({t.strip(): False for t in value.split(",") if t.strip()})
    return rules
