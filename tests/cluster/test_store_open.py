"""Replicas and workers starting together on a new PostgreSQL database each open the store: every one succeeds."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from sqlalchemy import make_url

from parley.store import Store


async def test_processes_opening_a_new_database_at_once_all_get_its_tables(pg_database: str) -> None:
    admin = make_url(pg_database).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"parley_race_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = make_url(pg_database).set(database=name).render_as_string(hide_password=False)
    try:
        opened = await asyncio.gather(*(Store.open(url) for _ in range(6)), return_exceptions=True)
        failures = [o for o in opened if isinstance(o, BaseException)]
        assert failures == []
        for store in opened:
            assert isinstance(store, Store)
            await store.close()
    finally:
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
