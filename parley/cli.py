"""The `parley` command: list and validate teams, run a team, list tools."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._cli_eval import add_parser as add_eval_parser
from ._cli_eval import eval_command, positive_int
from ._cli_users import add_parser as add_users_parser
from ._cli_users import users_command
from ._commands import COMMANDS
from ._mcp_session import McpCallError, McpConnection, describe
from ._outcome import ended_in_words
from ._proc import freeze_startup_objects
from ._render import Renderer, visible
from ._terminal import TerminalHuman, read_stdin
from .catalog import TeamEntry, check_trusted, discover_teams, programs
from .conversation import Conversation
from .errors import ConfigError, TeamFileError
from .events import RunResult
from .host import ASK_HUMAN
from .human import decide
from .run import Run
from .spec import McpServerSpec, TeamSpec, load_team_file
from .store import StoreError, open_for_command, os_problem, run_owner
from .tools import default_registry

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_TOKENS, EXIT_TIMEOUT, EXIT_ESCALATED, EXIT_STOPPED = (
    0,
    1,
    2,
    3,
    4,
    5,
    130,
)
EXIT_PIPE = 141
"""Standard output was closed (`parley run --json | head`): 128 + SIGPIPE, what a shell reports for `yes | head`."""
_EXIT_BY_REASON = {
    "max_tokens": EXIT_TOKENS,
    "timeout": EXIT_TIMEOUT,
    "stopped": EXIT_STOPPED,
    "error": EXIT_ERROR,
    "escalation": EXIT_ESCALATED,
    "loop": EXIT_ERROR,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="parley", description="Teams of role-based AI agents, watched and steered by people."
    )
    p.add_argument("--version", action="version", version=f"parley {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    teams = sub.add_parser("teams", help="list teams, or validate team files")
    teams.add_argument(
        "--teams", action="append", default=[], metavar="DIR", help="also look in DIR (repeatable)"
    )
    teams.add_argument("--validate", nargs="+", metavar="FILE", help="check team files; exit 1 on any error")

    run = sub.add_parser("run", help="run a team on a task and print the conversation")
    run.add_argument("team", help="a team name (see `parley teams`) or a path to a team YAML file")
    run.add_argument("task", help="what the team should do")
    run.add_argument(
        "--model", help="model for every role, e.g. local, scripted:FILE.yaml, openai:gpt-4o-mini"
    )
    run.add_argument("--max-turns", type=positive_int, metavar="N")
    run.add_argument("--max-tokens", type=positive_int, metavar="N")
    run.add_argument("--timeout", type=_positive_float, metavar="SECONDS")
    run.add_argument("--json", action="store_true", help="print one JSON event per line")
    run.add_argument("--chunks", action="store_true", help="with --json, include streamed text chunks")
    run.add_argument("--teams", action="append", default=[], metavar="DIR", help="also look in DIR for teams")
    run.add_argument(
        "--approve",
        action="append",
        default=[],
        metavar="all|none|TOOL,...",
        help="answer approval requests without asking: all, none, or these tools; MCP tools as "
        "SERVER.TOOL or SERVER.* (repeatable)",
    )
    run.add_argument(
        "--deny",
        action="append",
        default=[],
        metavar="TOOL,...",
        help="deny these tools' calls without asking (repeatable)",
    )
    run.add_argument(
        "--on-escalation",
        type=_escalation_rule,
        metavar="stop|continue|choose:N",
        help="without a human at the terminal: end the run (stop, the default; exit 5), let the team "
        "continue, or pick position N",
    )
    run.add_argument(
        "--answer",
        metavar="TEXT",
        help="without a human at the terminal: answer the roles' questions (ask_human) with TEXT",
    )
    run.add_argument(
        "--no-save",
        action="store_true",
        help="do not keep the conversation in the store (then `parley audit` cannot show it)",
    )

    add_eval_parser(sub)

    audit = sub.add_parser("audit", help="export a stored conversation's audit trail")
    audit.add_argument(
        "run_id", metavar="RUN_ID", help="the id `parley run` printed (a web chat thread id works too)"
    )
    audit.add_argument("--format", choices=("md", "jsonl"), default="md")

    tools = sub.add_parser("tools", help="list the tools roles can be granted, and each team's MCP servers")
    tools.add_argument(
        "--mcp",
        action="store_true",
        help="also start each team's MCP servers (trusted team files only) and list their tools",
    )
    tools.add_argument(
        "--teams", action="append", default=[], metavar="DIR", help="also look in DIR for teams"
    )

    sub.add_parser(
        "doctor",
        help="say which guarantees hold on this machine (sandbox, data folder, store, login); "
        "exit 1 if any does not",
    )

    ui = sub.add_parser("ui", help="start the web chat")
    ui.add_argument("--host", default=os.environ.get("PARLEY_UI_HOST", "127.0.0.1"))
    ui.add_argument("--port", type=positive_int, default=int(os.environ.get("PARLEY_UI_PORT", "8000")))

    add_users_parser(sub)
    for extra in COMMANDS:
        extra.add(sub)
    return p


def _escalation_rule(text: str) -> str:
    if text in ("stop", "continue") or (
        text.startswith("choose:") and text[7:].isdigit() and int(text[7:]) >= 1
    ):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use stop, continue or choose:N (N = 1, 2, ...)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # AutoGen logs every agent failure with a traceback; parley reports it as one event instead.
    logging.getLogger("autogen_core").setLevel(os.environ.get("PARLEY_AUTOGEN_LOG", "CRITICAL"))
    try:
        code = _command(args)
        sys.stdout.flush()  # a reader that left is seen here, not in Python's own flush at exit (a traceback)
        return code
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_PIPE
    except StoreError as exc:  # the store cannot be opened or written: the message names it and what to do
        print(f"parley: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:  # e.g. a read-only or full data folder: one line, not a traceback
        if exc.filename is None and exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise  # not about a file or a disk (a connection, a bug): the traceback is what helps
        print(f"parley: error: {os_problem(exc)}", file=sys.stderr)
        return EXIT_CONFIG


_EXTRA = {command.name: command for command in COMMANDS}
"""The smaller commands (parley/_commands.py), by name."""


def _command(args: argparse.Namespace) -> int:
    try:
        if args.command == "doctor":
            from ._doctor import doctor

            return doctor()
        if args.command == "teams":
            return _validate(args.validate) if args.validate else _list_teams(args.teams)
        if args.command == "tools":
            return _list_tools(args.teams, start_mcp=args.mcp)
        if args.command == "ui":
            from ._ui import serve

            return serve(args.host, args.port)
        if args.command == "users":
            from ._ui import read_password

            return users_command(args, read_password)
        if args.command == "eval":
            return eval_command(args)
        if args.command == "audit":
            from ._audit import export

            return asyncio.run(export(args.run_id, args.format))
        extra = _EXTRA.get(args.command)
        if extra is not None:
            return extra.run(args)
        return asyncio.run(_run(args))
    except ConfigError as exc:
        # Errors quote team files, model replies and paths: printed as text, never as terminal commands.
        print(
            visible(f"parley: error: {exc}" if not isinstance(exc, TeamFileError) else str(exc)),
            file=sys.stderr,
        )
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_STOPPED


def _stdout_gone() -> None:
    """Standard output's reader went away: send what is left (and Python's final flush) nowhere."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _list_teams(extra: list[str]) -> int:
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


def _validate(files: list[str]) -> int:
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


def _list_tools(teams_dirs: Sequence[str] = (), *, start_mcp: bool = False) -> int:
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


async def _run(args: argparse.Namespace) -> int:
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
            return await _drive(run, args)
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


async def _drive(run: Run, args: argparse.Namespace) -> int:
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
                    _stdout_gone()
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


if __name__ == "__main__":
    sys.exit(main())
