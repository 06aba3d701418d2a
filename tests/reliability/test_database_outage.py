"""A database that goes away mid-run: the run stops with an error the user sees, nothing written is
corrupted, and when the database is back the conversation goes on. Real PostgreSQL behind a real TCP
proxy that the test cuts and restores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from _support import team_yaml
from sqlalchemy.engine import make_url

from parley import Conversation
from parley.events import ErrorEvent, MessageEvent, RunResult, event_adapter
from parley.store import Store, _engine

Write = Callable[[str, str], Path]


class Proxy:
    """Forwards a local port to PostgreSQL; `cut()` drops every connection and refuses new ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.open = True
        self.pipes: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        self.writers |= {writer, up_writer}
        for task in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            self.pipes.add(task)
            task.add_done_callback(self.pipes.discard)

    def cut(self) -> None:
        """The database goes down: every connection is reset and new ones are refused."""
        self.open = False
        for w in self.writers:
            w.close()
        self.writers.clear()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def proxied(pg_database: str) -> AsyncIterator[tuple[str, Proxy]]:
    url = make_url(pg_database)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    yield url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False), proxy
    await proxy.close()


async def test_an_outage_stops_the_run_visibly_and_work_goes_on_when_it_returns(
    write: Write, proxied: tuple[str, Proxy], pg_database: str
) -> None:
    url, proxy = proxied
    team = write("team.yaml", team_yaml(roles=("alpha", "beta"), max_turns=6))
    script = write(
        "s.yaml",
        """
        roles:
          alpha: ["a1", "a2", "a3", "a4", "a5"]
          beta: ["b1", "b2", "b3", "b4", "b5"]
        delay_s: 0.3
    """,
    )  # (a fifth each: when a2 was stored before the cut, the resumed run's six turns take alpha to its fifth)
    store = await Store.open(url)
    tid = await store.create_thread("dana", "test-team", "scripted", "outage")
    conv = Conversation(team, model=f"scripted:{script}")
    conv.attach(store, tid)
    run = conv.start("Go")
    shown = []
    async for ev in run:
        shown.append(ev)
        if isinstance(ev, MessageEvent) and ev.turn == 2:
            proxy.cut()  # the database goes away mid-run
    result = shown[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "error"
    errors = [e for e in shown if isinstance(e, ErrorEvent)]
    assert errors and "saving the conversation failed" in errors[0].content
    # What was written before the outage is intact, as a direct look at the database shows.
    direct = await Store.open(pg_database)
    stored = [event_adapter.validate_python(r.payload) for r in await direct.events(tid)]
    said = [e.content for e in stored if isinstance(e, MessageEvent)]
    assert said[:2] == ["a1", "b1"] and len(said) <= 3
    seqs = [r.seq for r in await direct.events(tid)]
    assert seqs == list(range(1, len(seqs) + 1))  # no gaps, no duplicates
    # The database is back: the same conversation goes on, from its last checkpoint.
    proxy.restore()
    again = await Conversation.resume(direct, tid, model=f"scripted:{script}", teams_dirs=[team.parent])
    more = [ev async for ev in again.start("Carry on")]
    assert isinstance(more[-1], RunResult) and more[-1].stop_reason == "max_turns", more[-1].detail
    assert [e.source for e in more if isinstance(e, MessageEvent)][:1] == [
        "alpha" if len(said) % 2 == 0 else "beta"
    ]
    await direct.close()
    await store.close()


async def _end_sessions(url: str) -> int:
    """End every session of the database, as a PostgreSQL restart does, and wait until the server has them all gone;
    how many it ended."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn, timeout=5)
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    try:
        ended = int(await admin.fetchval(f"SELECT count(pg_terminate_backend(pid)) {others}"))
        while await admin.fetchval(f"SELECT count(*) {others}"):  # noqa: ASYNC110  # the server's view: no event
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    return ended


@pytest.mark.parametrize("idle_s", [3600.0, 0.0], ids=["busy-pool", "idle-pool"])
async def test_a_store_goes_on_when_the_database_ended_its_connections(
    pg_database: str, monkeypatch: pytest.MonkeyPatch, idle_s: float
) -> None:
    """PostgreSQL restarted, or an administrator ended every session: the connections the store's pool keeps are
    dead. Its next reads and writes take new ones instead of failing, whether its connections were in steady use
    (the driver saw them closed) or idle long enough to be pinged first (`idle_s`: how long counts as idle)."""
    monkeypatch.setattr(_engine, "PING_IDLE_S", idle_s)
    store = await Store.open(pg_database)
    try:
        tid = await store.create_thread("dana", "test-team", "scripted", "restart")
        await asyncio.gather(*(store.events(tid) for _ in range(3)))  # the pool keeps several connections
        assert await _end_sessions(pg_database) >= 1
        seqs = [await store.append_event(tid, "note", {"n": n}) for n in range(3)]
        reads = await asyncio.gather(*(store.events(tid) for _ in range(3)))
        assert seqs == [1, 2, 3]
        assert [[row.payload["n"] for row in rows] for rows in reads] == [[0, 1, 2]] * 3
    finally:
        await store.close()
