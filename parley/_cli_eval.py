"""`parley eval`: its options, and running the suites they name (parley/evals). parley/cli.py adds the parser
and calls `eval_command`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "eval_command", "positive_int"]


def positive_int(text: str) -> int:
    """An option's whole number of at least 1 (argparse's `type`); shared with parley/cli.py."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _repeats(text: str) -> int:
    value = positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"{text!r}: at most 100 repeats of a scenario")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def add_parser(sub: Any) -> None:
    """The `eval` command's parser, on `parley`'s subparsers."""
    ev = sub.add_parser(
        "eval", help="run evaluation suites and write results.jsonl, summary.md and report.html"
    )
    ev.add_argument("suites", nargs="+", metavar="SUITE.yaml")
    ev.add_argument("--team", help="run every scenario against this team instead")
    ev.add_argument("--model", help="run every scenario on this model instead")
    ev.add_argument(
        "--compare",
        metavar="A,B",
        default="",
        help="run the suites against each of these teams or models, side by side in one report",
    )
    ev.add_argument("--concurrency", type=positive_int, default=1, metavar="N", help="scenario runs at once")
    ev.add_argument(
        "--repeat",
        type=_repeats,
        metavar="K",
        help="run every scenario K times (instead of the suites' repeat:); the report gives pass rates with "
        "confidence intervals, pass^k, pass@k and flaky scenarios",
    )
    ev.add_argument(
        "--workers", action="store_true", help="run the scenarios on a cluster's workers (PARLEY_REDIS_URL)"
    )
    ev.add_argument(
        "--out", default="eval-out", metavar="DIR", help="where the reports go (default: eval-out)"
    )
    ev.add_argument(
        "--judge-model",
        metavar="MODEL",
        help="a model for `judge:` expectations (skipped without one) and the failure modes no rule finds",
    )
    ev.add_argument(
        "--junit", metavar="FILE", help="also write JUnit XML: one test case per scenario run, for CI"
    )
    ev.add_argument(
        "--baseline",
        metavar="OLD/results.jsonl",
        help="an earlier evaluation's results: mark each scenario's regressions and improvements",
    )
    ev.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="wall-clock limit per scenario run (unless the scenario sets timeout_s)",
    )
    ev.add_argument("--no-save", action="store_true", help="do not keep the runs' conversations in the store")
    ev.add_argument("--teams", action="append", default=[], metavar="DIR", help="also look in DIR for teams")


def eval_command(args: argparse.Namespace) -> int:
    """Run `parley eval`; the exit code (ConfigError is the CLI's to report)."""
    from .evals import evaluate

    compare = [c.strip() for c in args.compare.split(",") if c.strip()]
    return asyncio.run(
        evaluate(
            args.suites,
            team=args.team,
            model=args.model,
            compare=compare,
            concurrency=args.concurrency,
            out=Path(args.out),
            judge_model=args.judge_model,
            save=not args.no_save,
            teams_dirs=args.teams,
            timeout_s=args.timeout,
            workers=args.workers,
            repeat=args.repeat,
            junit=Path(args.junit) if args.junit else None,
            baseline=Path(args.baseline) if args.baseline else None,
        )
    )
