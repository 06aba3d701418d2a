"""A cluster for a benchmark: web replicas that only relay (`PARLEY_RUNS=workers`) and `parley worker` processes,
all real, on a PostgreSQL database made for the run and a Redis key prefix of its own (docs/deployment.md).

Every replica shares the database and the login secret, as replicas behind a load balancer do; a benchmark's client
plays the sticky load balancer by keeping each tab on the replica it first connected to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from sqlalchemy.engine import make_url

from bench._common import ROOT
from parley.store import Store

# The web tests' server launcher, reused as it is (tests/ is not a package).
sys.path[:0] = [p for p in (str(ROOT / "tests"),) if p not in sys.path]
from ui.web_servers import PG_DEFAULT, Server, clear_redis, pg_admin, start_worker, stop_workers  # noqa: E402

REDIS_DEFAULT = "redis://127.0.0.1:6379/0"
PG_ENV, REDIS_ENV = "PARLEY_BENCH_PG_URL", "PARLEY_BENCH_REDIS_URL"
"""Where the cluster's services are (the defaults: this machine's)."""
LEASE_TTL_S = 10.0
"""A run's lease: long enough that a busy machine's late renewal never hands a live run over mid-benchmark."""


def services() -> tuple[str, str]:
    """The PostgreSQL server and the Redis the cluster uses, checked to answer; else a clear error."""
    pg = os.environ.get(PG_ENV) or PG_DEFAULT
    at = os.environ.get(REDIS_ENV) or REDIS_DEFAULT
    try:
        asyncio.run(pg_admin(pg, "SELECT 1"))
    except Exception as exc:
        raise SystemExit(f"--cluster needs PostgreSQL: none answers at {pg} ({exc}); set {PG_ENV}") from exc
    client = redis.Redis.from_url(at, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise SystemExit(f"--cluster needs Redis: none answers at {at} ({exc}); set {REDIS_ENV}") from exc
    finally:
        client.close()
    return pg, at


class Cluster:
    """`replicas` web processes and `workers` workers; `with Cluster(...) as c:` boots them, and stops them, drops
    the database and clears the Redis keys on the way out. `make_server(data_dir, extra_env)` makes a web process
    (not started) of the benchmark's own kind."""

    def __init__(
        self,
        folder: Path,
        make_server: Callable[[Path, dict[str, str]], Server],
        *,
        replicas: int = 2,
        workers: int = 2,
        users: dict[str, str],
    ) -> None:
        self.folder = folder
        self._make = make_server
        self.counts = (replicas, workers)
        self.users = users
        self.base, self.redis_url = services()
        self.database = make_url(self.base).set(database=f"parley_bench_{uuid.uuid4().hex[:12]}")
        self.prefix = f"parley-bench-{uuid.uuid4().hex}"
        self.web: list[Server] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    @property
    def db_url(self) -> str:
        return self.database.render_as_string(hide_password=False)

    def env(self) -> dict[str, str]:
        return {
            "PARLEY_DATABASE_URL": self.db_url,
            "CHAINLIT_AUTH_SECRET": self._secret,
            "PARLEY_REDIS_URL": self.redis_url,
            "PARLEY_REDIS_PREFIX": self.prefix,
            "PARLEY_RUNS": "workers",
            "PARLEY_LEASE_TTL_S": str(LEASE_TTL_S),
        }

    def pids(self) -> list[int]:
        """Every server process: the web replicas, then the workers."""
        return [s.proc.pid for s in self.web if s.proc is not None] + [w.pid for w in self.workers]

    def __enter__(self) -> Cluster:
        self._secret = secrets.token_urlsafe(32)
        asyncio.run(pg_admin(self.base, f'CREATE DATABASE "{self.database.database}"'))
        try:
            asyncio.run(_create_tables(self.db_url))
            replicas, workers = self.counts
            self.web = [self._make(self.folder / f"web-{n}", self.env()) for n in range(replicas)]
            for name, password in self.users.items():
                self.web[0].parley("users", "add", name, "--password-stdin", stdin=password + "\n")
            for server in self.web:
                server.launch()
            self.workers = [self._worker(n) for n in range(workers)]
            for server in self.web:
                server.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _worker(self, n: int) -> subprocess.Popen[bytes]:
        (self.folder / f"worker-{n}").mkdir(parents=True, exist_ok=True)
        env = self.web[0].env() | {"PARLEY_DATA_DIR": str(self.folder / f"worker-{n}")}
        return start_worker(env, self.folder / f"worker-{n}.log")

    def logs(self) -> str:
        parts = [f"--- parley ui on {s.url}:\n{s.log_tail(30)}" for s in self.web]
        for n in range(len(self.workers)):
            text = (self.folder / f"worker-{n}.log").read_text(encoding="utf-8", errors="replace")
            parts.append(f"--- parley worker {n}:\n" + "\n".join(text.splitlines()[-30:]))
        return "\n".join(parts)

    def __exit__(self, *exc: object) -> None:
        stop_workers(self.workers)
        for server in self.web:
            server.stop()
        clear_redis(self.redis_url, self.prefix)
        with contextlib.suppress(Exception):
            asyncio.run(
                pg_admin(self.base, f'DROP DATABASE IF EXISTS "{self.database.database}" WITH (FORCE)')
            )


async def _create_tables(url: str) -> None:
    store = await Store.open(url)  # makes the schema once, before the processes race to
    await store.close()
