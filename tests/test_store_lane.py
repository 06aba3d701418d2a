"""PostgreSQL connections kept between statements (parley/store/_lane.py): reused while in steady use, given back
to the pool when idle, never reused once broken, cut short or inside a transaction, and all given back on close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import PendingRollbackError

from parley.store import Store
from parley.store._driver import DriverStatement
from parley.store._lane import KEEP, Lane

PID = DriverStatement("SELECT pg_backend_pid()")


@pytest.fixture
async def pg(pg_database: str) -> AsyncIterator[Store]:
    store = await Store.open(pg_database)
    yield store
    await store.close()


@pytest.fixture
async def admin(pg_database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(make_url(pg_database).set(drivername="postgresql").render_as_string(False))
    yield conn
    await conn.close()


def lane_of(store: Store) -> Lane:
    assert store._lane is not None  # pyright: ignore[reportPrivateUsage]
    return store._lane  # pyright: ignore[reportPrivateUsage]


def checked_out(store: Store) -> int:
    return store._engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]  # pyright: ignore


async def pid_of(lane: Lane) -> int:
    async with lane.connection() as conn:
        row = await PID.row(conn, {})
        assert row is not None
        return int(row[0])


async def test_statements_in_steady_use_run_on_one_kept_connection(pg: Store) -> None:
    lane = lane_of(pg)
    first = await pid_of(lane)
    assert await pid_of(lane) == first and await pid_of(lane) == first
    assert lane.kept == 1 and checked_out(pg) == 1
    assert await pg.get_thread("no-such-thread") is None
    assert lane.kept == 1 and checked_out(pg) == 1, "a read through the store took another connection"


async def test_a_connection_idle_too_long_goes_back_to_the_pool_and_is_not_used_unchecked(pg: Store) -> None:
    lane = Lane(pg._autocommit, idle_s=0.0)  # type: ignore[arg-type]  # pyright: ignore[reportPrivateUsage]
    first = await pid_of(lane)
    second = await pid_of(lane)  # the first, idle "too long", was not used: the pool (and its ping) gave one
    assert second != first
    assert lane.kept == 1 and checked_out(pg) == 1, "the idle one was not given back"
    await lane.close()
    assert checked_out(pg) == 0


async def test_a_kept_connection_the_server_closed_is_replaced(pg: Store, admin: asyncpg.Connection) -> None:
    lane = lane_of(pg)
    first = await pid_of(lane)
    gone = asyncio.Event()
    async with lane.connection() as conn:
        conn.info["parley_driver"].add_termination_listener(lambda _: gone.set())
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
    async with asyncio.timeout(30):
        await gone.wait()  # the kept connection's driver has heard it is closed
    assert await pid_of(lane) != first
    assert await pg.get_thread("no-such-thread") is None
    assert lane.kept == 1 and checked_out(pg) == 1


async def _sleeping_on_server(admin: asyncpg.Connection, pid: int) -> None:
    """Wait (bounded) until PostgreSQL shows backend `pid` running the test's pg_sleep."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%'"
    async with asyncio.timeout(30):
        while True:
            if await admin.fetchval(query, pid):
                return
            await asyncio.sleep(0.02)


async def test_a_statement_cut_short_or_failing_gives_its_connection_up(
    pg: Store, admin: asyncpg.Connection
) -> None:
    lane = lane_of(pg)
    first = await pid_of(lane)

    async def sleep() -> None:
        async with lane.connection() as conn:
            await DriverStatement("SELECT pg_sleep(60)").row(conn, {})

    sleeping = asyncio.ensure_future(sleep())
    await _sleeping_on_server(admin, first)
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping
    assert lane.kept == 0 and checked_out(pg) == 0
    with pytest.raises(asyncpg.PostgresSyntaxError):
        async with lane.connection() as conn:
            await DriverStatement("SELEC 1").row(conn, {})
    assert lane.kept == 0 and checked_out(pg) == 0, "a failed statement's connection was kept"
    second = await pid_of(lane)
    assert second != first and lane.kept == 1


async def test_a_connection_inside_a_transaction_of_sqlalchemys_is_not_kept(pg: Store) -> None:
    lane = lane_of(pg)
    async with lane.connection() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    assert lane.kept == 0 and checked_out(pg) == 0


async def test_no_more_than_keep_connections_are_kept_and_close_gives_them_all_back(pg_database: str) -> None:
    store = await Store.open(pg_database)
    lane = lane_of(store)
    inside, release = asyncio.Semaphore(0), asyncio.Event()

    async def hold() -> int:
        async with lane.connection() as conn:
            row = await PID.row(conn, {})
            inside.release()
            await release.wait()
            assert row is not None
            return int(row[0])

    holders = [asyncio.ensure_future(hold()) for _ in range(KEEP + 2)]
    for _ in holders:
        await inside.acquire()
    assert checked_out(store) == KEEP + 2
    release.set()
    assert len(set(await asyncio.gather(*holders))) == KEEP + 2
    assert lane.kept == KEEP and checked_out(store) == KEEP
    await store.close()
    assert checked_out(store) == 0


async def test_a_statement_its_kept_connection_could_not_send_runs_once_more_on_a_new_one(pg: Store) -> None:
    """The server ended a kept connection a moment ago and the driver is still taking its goodbye in (or the
    connection is otherwise taken up): the driver refuses to send the next statement. Nothing of it reached the
    server, so it runs on a new connection instead of failing."""
    lane = lane_of(pg)
    first = await pid_of(lane)
    async with lane.connection() as conn:
        driver = conn.info["parley_driver"]
    busy = asyncio.ensure_future(driver.fetchval("SELECT pg_sleep(30)"))
    await asyncio.sleep(0)  # its first step: the driver is now taken up by it
    assert await pid_of(lane) != first
    with contextlib.suppress(Exception):
        await busy  # its connection was dropped for the new one
    assert await pg.get_thread("no-such-thread") is None
    assert lane.kept == 1 and checked_out(pg) == 1


async def test_a_statement_of_a_transaction_is_never_moved_to_another_connection(pg: Store) -> None:
    """A statement the driver could not send inside a transaction fails with the driver's error (run elsewhere, it
    would leave the transaction it belongs to), and the transaction then fails as a whole."""
    refused: list[BaseException] = []
    with pytest.raises(PendingRollbackError):
        async with pg._engine.begin() as conn:  # pyright: ignore[reportPrivateUsage]
            row = await PID.row(conn, {})
            assert row is not None
            driver = conn.info["parley_driver"]
            busy = asyncio.ensure_future(driver.fetchval("SELECT pg_sleep(30)"))
            await asyncio.sleep(0)  # its first step: the driver is now taken up by it
            try:
                await PID.row(conn, {})
            except Exception as exc:
                refused.append(exc)
            with contextlib.suppress(Exception):
                await busy
            assert conn.invalidated
    assert [type(exc) for exc in refused] == [asyncpg.InterfaceError], refused
