"""Fixtures of the cluster tests: a real Redis, and a key prefix of each test's own."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

REDIS_DEFAULT = "redis://127.0.0.1:6379/0"


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
