"""The `parley` command: list and validate teams, run a team, list tools."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__
from ._cli_eval import add_parser as add_eval_parser
from ._cli_eval import eval_command, positive_int
from ._cli_users import add_parser as add_users_parser
from ._cli_users import users_command
from ._commands import COMMANDS
from ._render import visible
from .errors import ConfigError, StoreError, TeamFileError

# The commands' own modules are imported when the command runs: `parley ui` or `parley users` start without
# loading the engine, AutoGen and MCP (about a second and a half each time).
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
        stdout_gone()
        return EXIT_PIPE
    except StoreError as exc:  # the store cannot be opened or written: the message names it and what to do
        print(f"parley: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:  # e.g. a read-only or full data folder: one line, not a traceback
        if exc.filename is None and exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise  # not about a file or a disk (a connection, a bug): the traceback is what helps
        from .store import os_problem

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
            from ._cli_run import list_teams, validate

            return validate(args.validate) if args.validate else list_teams(args.teams)
        if args.command == "tools":
            from ._cli_run import list_tools

            return list_tools(args.teams, start_mcp=args.mcp)
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
        from ._cli_run import run_command

        return asyncio.run(run_command(args))
    except ConfigError as exc:
        # Errors quote team files, model replies and paths: printed as text, never as terminal commands.
        print(
            visible(f"parley: error: {exc}" if not isinstance(exc, TeamFileError) else str(exc)),
            file=sys.stderr,
        )
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_STOPPED


def stdout_gone() -> None:
    """Standard output's reader went away: send what is left (and Python's final flush) nowhere."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
