"""Fixtures of the cluster tests: a real Redis, and a key prefix of each test's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

REDIS_DEFAULT = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[2]
PARLEY = str(Path(sys.executable).parent / "parley")
TTL_S = 2.0
"""The cluster's lease time to live in these tests: a dead process's run is carried on within about that."""
Workers = Callable[[], "subprocess.Popen[bytes]"]


@pytest.fixture
async def redis_url() -> str:
    """The URL of a Redis that answers (`PARLEY_TEST_REDIS_URL`, else the local default); the test skips if none."""
    url = os.environ.get("PARLEY_TEST_REDIS_URL") or REDIS_DEFAULT
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
    except (redis.RedisError, OSError) as exc:
        pytest.skip(
            f"Redis not reachable at {url}: start it or set PARLEY_TEST_REDIS_URL ({type(exc).__name__}: {exc})"
        )
    finally:
        await client.aclose()
    return url


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    name = f"parley-test-{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{name}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def cluster_env(pg_database: str, redis_url: str, prefix: str) -> dict[str, str]:
    """The environment of a process of the test's cluster (its own database, its own Redis keys)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return env | {
        "PARLEY_DATABASE_URL": pg_database,
        "PARLEY_REDIS_URL": redis_url,
        "PARLEY_REDIS_PREFIX": prefix,
        "PARLEY_LEASE_TTL_S": str(TTL_S),
    }


@pytest.fixture
def workers(cluster_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    """Starts `parley worker` processes of the test's cluster; stops what is left at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            [PARLEY, "worker"], cwd=ROOT, env=cluster_env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def two_runs(tmp_path: Path) -> Path:
    """A script for two runs of content-studio (researcher, writer, editor; the editor's APPROVE ends each)."""
    script = tmp_path / "two-runs.yaml"  # JSON is YAML
    script.write_text(
        '{"roles": {"researcher": ["Notes 1.", "Notes 2."], "writer": ["Draft 1.", "Draft 2."],'
        ' "editor": ["Good 1. APPROVE", "Good 2. APPROVE"]}}'
    )
    return script
