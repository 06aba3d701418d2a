"""`parley worker`: run conversations for the web processes of a cluster (see parley.cluster)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from .errors import ConfigError

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="run conversations for a cluster's web processes (needs PARLEY_REDIS_URL and a PostgreSQL store)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=64,
        metavar="N",
        help="jobs started at once at most (default 64); runs in progress are not limited",
    )


def run(args: argparse.Namespace) -> int:
    from .cluster import REDIS_ENV

    if not os.environ.get(REDIS_ENV, "").strip():
        raise ConfigError(
            f"a worker serves a cluster: set {REDIS_ENV} (e.g. redis://127.0.0.1:6379/0) and PARLEY_DATABASE_URL "
            "to the PostgreSQL database the web processes use"
        )
    if args.concurrency < 1:
        raise ConfigError(f"--concurrency {args.concurrency}: give at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from ._proc import run_service

    run_service(_serve(args.concurrency))
    return 0


async def _serve(concurrency: int) -> None:
    from ._proc import freeze_startup_objects
    from .cluster import Node, serve_worker
    from .evals import run_queued_scenario
    from .store import open_for_command

    store = await open_for_command(hint="")
    try:
        node = await Node.from_env(store)
        assert node is not None
        freeze_startup_objects()  # the engine is imported by now: full collections skip it while runs go on
        await serve_worker(node, concurrency=concurrency, handlers={"eval": run_queued_scenario})
    finally:
        await store.close()
