"""The cluster's Redis bus, over a real Redis: two Bus objects stand for two nodes."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio as redis
import redis.asyncio.connection as redis_connection

from parley.cluster import _outbound
from parley.cluster._bus import TTL_S, Bus, client_name
from parley.cluster._commands import Command, Job
from parley.cluster._follow import GATHER_MAX_S, GATHER_PER_STREAM_S, Followers
from parley.errors import ConfigError

T = TypeVar("T")
WAIT_S = 10.0


async def next_of(items: AsyncGenerator[T]) -> T:
    return await asyncio.wait_for(anext(items), WAIT_S)


def _event(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "writer", "text": text}


@pytest.fixture
async def nodes(redis_url: str, prefix: str) -> AsyncIterator[tuple[Bus, Bus]]:
    one = await Bus.connect(redis_url, prefix=prefix)
    two = await Bus.connect(redis_url, prefix=prefix)
    yield one, two
    await one.close()
    await two.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Any]:
    """A plain client, for writing what the bus would never write and reading back what it did.

    Typed Any: redis-py hints its asyncio list commands as returning plain values."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def tid() -> str:
    return uuid.uuid4().hex


async def test_events_published_on_one_node_reach_a_watcher_on_another_in_order(
    nodes: tuple[Bus, Bus],
) -> None:
    one, two = nodes
    thread = tid()
    watching = two.follow(thread, await two.last_id(thread))
    sent = [(_event("draft"), 1), (_event("dr"), None), (_event("draft two"), 2)]
    ids = [await one.publish(thread, event, seq) for event, seq in sent]
    got = [await next_of(watching) for _ in sent]
    assert got == [(i, event, seq) for i, (event, seq) in zip(ids, sent, strict=True)]
    await watching.aclose()


async def test_a_watcher_resuming_from_an_entry_gets_exactly_what_came_after(nodes: tuple[Bus, Bus]) -> None:
    one, two = nodes
    thread = tid()
    assert await two.last_id(thread) == "0-0", "a thread with no events yet"
    first = await one.publish(thread, _event("one"), 1)
    await one.publish(thread, _event("two"), 2)
    await one.publish(thread, _event("three"), 3)
    assert await two.last_id(thread) != first
    resumed = two.follow(thread, first)
    assert [(await next_of(resumed))[2] for _ in range(2)] == [2, 3]
    await one.publish(thread, _event("four"), 4)
    assert (await next_of(resumed))[1:] == (_event("four"), 4), "and goes on live after the backlog"
    await resumed.aclose()


async def test_two_watchers_of_one_stream_on_one_node_each_get_what_came_after_their_own_entry(
    nodes: tuple[Bus, Bus],
) -> None:
    """The node's one read starts where its furthest-behind watcher is: a page that joins behind another gets its
    backlog, and the page ahead is given nothing twice."""
    one, two = nodes
    thread = tid()
    first = await one.publish(thread, _event("one"), 1)
    await one.publish(thread, _event("two"), 2)
    ahead = two.follow(thread, await two.last_id(thread))
    await one.publish(thread, _event("three"), 3)
    assert (await next_of(ahead))[2] == 3
    behind = two.follow(thread, first)
    assert [(await next_of(behind))[2] for _ in range(2)] == [2, 3]
    await one.publish(thread, _event("four"), 4)
    assert (await next_of(behind))[2] == 4
    assert (await next_of(ahead))[2] == 4, "the page ahead is given neither two nor three again"
    await ahead.aclose()
    await one.publish(thread, _event("five"), 5)
    assert (await next_of(behind))[2] == 5, "and the one left goes on alone"
    await behind.aclose()


async def test_a_watcher_joining_behind_a_read_in_flight_still_gets_its_backlog(
    redis_url: str, prefix: str
) -> None:
    """A page joins further back than the node's read that is out (a reopened thread catching up): that read's
    reply holds only what came after its own start, so the page is given nothing of it and the next read starts
    from the page's own entry. The page ahead is given nothing twice."""
    client: Any = redis.Redis.from_url(redis_url, decode_responses=True)
    key = f"{prefix}:events:{tid()}"
    first = await client.xadd(key, {"n": "1"})
    second = await client.xadd(key, {"n": "2"})
    replied, release = asyncio.Event(), asyncio.Event()

    async def retrying(_what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        return await call()

    followers = Followers(client, f"{prefix}:wake:{tid()}", retrying, lambda: 1000)
    reader: Any = followers._held  # pyright: ignore[reportPrivateUsage]  # the node's read, on its own connection
    read = reader.xread

    async def held(streams: dict[str, str], **options: Any) -> Any:
        got = await read(streams, **options)
        if not release.is_set() and any(k == key for k, _ in got or ()):
            replied.set()  # the reply is in hand and not handed out yet
            await release.wait()
        return got

    reader.xread = held
    ahead = followers.entries(key, second, lambda: WAIT_S)
    behind = followers.entries(key, first, lambda: WAIT_S)
    try:
        got_ahead = asyncio.ensure_future(anext(ahead))
        await client.xadd(key, {"n": "3"})
        await asyncio.wait_for(replied.wait(), WAIT_S)
        got_behind = asyncio.ensure_future(anext(behind))  # joins while that reply waits
        async with asyncio.timeout(WAIT_S):
            # The joining page's first step, on the loop's next turns: no event to await.
            while len(followers._by_key.get(key, ())) < 2:  # noqa: ASYNC110  # pyright: ignore[reportPrivateUsage]
                await asyncio.sleep(0)
        release.set()
        assert [fields["n"] for _, fields in await asyncio.wait_for(got_ahead, WAIT_S)] == ["3"]
        assert [fields["n"] for _, fields in await asyncio.wait_for(got_behind, WAIT_S)] == ["2", "3"]
        await client.xadd(key, {"n": "4"})
        assert [fields["n"] for _, fields in await asyncio.wait_for(anext(ahead), WAIT_S)] == ["4"]
        assert [fields["n"] for _, fields in await asyncio.wait_for(anext(behind), WAIT_S)] == ["4"]
    finally:
        release.set()
        await ahead.aclose()
        await behind.aclose()
        await followers.close()
        await client.delete(key)
        await client.aclose()


@pytest.mark.parametrize("streams", [3, 150])
async def test_what_comes_while_the_reader_gathers_arrives_in_one_read(
    redis_url: str, prefix: str, streams: int
) -> None:
    """After a read that found entries, the node's reader waits before the next (longer the more streams it
    follows, up to a cap), and what every run sent meanwhile comes in that one read."""
    client: Any = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = [f"{prefix}:events:{tid()}" for _ in range(streams)]

    async def retrying(_what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        return await call()

    followers = Followers(client, f"{prefix}:wake:{tid()}", retrying, lambda: 1000)
    reader: Any = followers._held  # pyright: ignore[reportPrivateUsage]  # the node's read, on its own connection
    read = reader.xread
    returned: list[set[str]] = []
    """The streams each read returned entries of, in order."""

    async def recorded(*args: Any, **options: Any) -> Any:
        got = await read(*args, **options)
        returned.append({str(key) for key, _ in got or ()})
        return got

    reader.xread = recorded
    pauses: list[tuple[float, int]] = []
    """Each pause after the first stream's entry came: how long, and after how many reads."""
    gathering, gathered = asyncio.Event(), asyncio.Event()

    async def gather(seconds: float) -> None:  # the pause, held until the test has written
        if any(keys[0] in r for r in returned):
            pauses.append((seconds, len(returned)))
            gathering.set()
            await gathered.wait()

    followers._gather = gather  # type: ignore[method-assign]  # pyright: ignore[reportPrivateUsage]
    watched = [followers.entries(key, "0-0", lambda: WAIT_S) for key in keys]
    pending = [asyncio.ensure_future(anext(w)) for w in watched]
    try:
        await client.xadd(keys[0], {"n": "1"})
        assert [f["n"] for _, f in await asyncio.wait_for(pending[0], WAIT_S)] == ["1"]
        await asyncio.wait_for(gathering.wait(), WAIT_S)
        seconds, after = pauses[0]
        assert seconds == min(GATHER_MAX_S, GATHER_PER_STREAM_S * streams)
        assert seconds < 0.001 if streams == 3 else seconds == GATHER_MAX_S
        for key in keys[1:3]:  # two runs send while the reader waits
            await client.xadd(key, {"n": "2"})
        gathered.set()
        got = [await asyncio.wait_for(p, WAIT_S) for p in pending[1:3]]
        assert [[f["n"] for _, f in batch] for batch in got] == [["2"], ["2"]]
        assert {keys[1], keys[2]} <= returned[after], "both came in the one read after the pause"
    finally:
        gathered.set()
        for p in pending:
            p.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for w in watched:
            await w.aclose()
        await followers.close()
        await client.delete(*keys)
        await client.aclose()


async def test_a_watcher_joining_now_sees_nothing_from_before(nodes: tuple[Bus, Bus]) -> None:
    one, two = nodes
    thread = tid()
    await one.publish(thread, _event("old"), 1)
    watching = two.follow(thread)
    first = asyncio.ensure_future(anext(watching))
    n = 0
    # The watcher starts at some point while new events keep coming: whatever it sees first is new.
    async with asyncio.timeout(WAIT_S):
        while not first.done():
            n += 1
            await one.publish(thread, _event(f"new {n}"), n + 1)
            await asyncio.sleep(0)
    _, event, _ = first.result()
    assert event["text"].startswith("new "), event
    await watching.aclose()


async def test_stream_entries_the_bus_did_not_write_are_skipped(
    nodes: tuple[Bus, Bus], raw: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    one, two = nodes
    thread = tid()
    key = f"{prefix}:events:{thread}"
    watching = two.follow(thread, await two.last_id(thread))
    await raw.xadd(key, {"other": "field"})
    await raw.xadd(key, {"event": "{not json"})
    await raw.xadd(key, {"event": "[1, 2]"})
    await raw.xadd(key, {"event": "{}", "seq": "seven"})
    await raw.xadd(key, {"event": "[" * 100_000})
    await one.publish(thread, _event("real"), 5)
    with caplog.at_level(logging.WARNING, logger="parley.cluster"):
        assert (await next_of(watching))[1:] == (_event("real"), 5)
    assert len([r for r in caplog.records if "skipped stream entry" in r.message]) == 5
    await watching.aclose()


async def test_a_stream_is_capped_and_expires_unless_written_to(
    redis_url: str, prefix: str, raw: Any
) -> None:
    bus = await Bus.connect(redis_url, prefix=prefix, stream_cap=200)
    thread = tid()
    key = f"{prefix}:events:{thread}"
    for n in range(1000):
        await bus.publish(thread, _event(f"piece {n}"), None)
    assert 200 <= await raw.xlen(key) < 1000, "trimmed to about the cap"
    assert 0 < await raw.ttl(key) <= TTL_S
    await raw.expire(key, 5)
    last = await bus.publish(thread, _event("more"), 1)
    assert await raw.ttl(key) > 5, "each write pushes the expiry back"
    assert await bus.last_id(thread) == last
    await bus.close()


async def test_a_command_sent_before_anyone_listens_reaches_the_next_owner(nodes: tuple[Bus, Bus]) -> None:
    one, two = nodes
    thread = tid()
    sent = [
        Command(kind="say", actor="ana", text="also cover costs"),
        Command(kind="approve", actor="ben", target="req-1"),
        Command(kind="resolve", actor="ana", target="esc-1", choose=2, proceed=True),
        Command(kind="stop", actor="ben"),
    ]
    for cmd in sent:
        await one.send(thread, cmd)
    owner = two.commands(thread, "node-2")
    assert [await next_of(owner) for _ in sent] == sent
    await owner.aclose()


async def test_two_readers_get_each_command_once(redis_url: str, prefix: str, nodes: tuple[Bus, Bus]) -> None:
    one, two = nodes
    thread = tid()
    third = await Bus.connect(redis_url, prefix=prefix)
    got: list[Command] = []
    all_in = asyncio.Event()
    sent = [Command(kind="say", actor="ana", text=f"note {n}") for n in range(20)]

    async def read(bus: Bus) -> None:
        async for cmd in bus.commands(thread, f"node-{id(bus)}"):
            got.append(cmd)
            if len(got) >= len(sent):
                all_in.set()

    readers = [asyncio.create_task(read(bus)) for bus in (two, third)]
    for cmd in sent:
        await one.send(thread, cmd)
    await asyncio.wait_for(all_in.wait(), WAIT_S)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    assert Counter(c.id for c in got) == Counter(c.id for c in sent)
    await third.close()


async def test_a_malformed_command_is_skipped_and_the_next_one_arrives(
    nodes: tuple[Bus, Bus], raw: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    one, two = nodes
    thread = tid()
    key = f"{prefix}:commands:{thread}"
    await raw.rpush(key, "not json", '{"kind": "explode", "actor": "x", "id": "1"}')
    await raw.rpush(key, '{"kind": "say", "actor": "%s", "id": "3"}' % ("b" * 300))
    await raw.rpush(key, '{"kind": "stop", "actor": "ana", "id": "2", "sudo": true}')
    await raw.rpush(key, b"\xff\xfe")
    valid = Command(kind="interrupt", actor="ana", text="wait")
    await one.send(thread, valid)
    owner = two.commands(thread, "node-2")
    with caplog.at_level(logging.WARNING, logger="parley.cluster"):
        assert await next_of(owner) == valid
    assert len([r for r in caplog.records if "skipped a command" in r.message]) == 5
    await owner.aclose()


def test_the_bus_reads_redis_replies_with_the_c_parser() -> None:
    """hiredis (a dependency of parley's) parses what Redis answers in C. Without it, redis-py parses in Python and
    the cluster costs about 40 % more CPU per message (bench/webload.py --cluster): an install that lost it fails
    here, not in production."""
    assert redis_connection.DefaultParser.__name__ == "_AsyncHiredisParser", redis_connection.DefaultParser


async def test_the_bus_packs_its_commands_with_hiredis_and_redis_reads_them_as_sent(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py's asyncio connections pack commands in Python; the bus's pack them with hiredis (cluster/_packing.py).
    Every command goes that way, multi-word ones (CLIENT SETNAME on connect) and non-ASCII text included, and a URL's
    own options still apply."""
    from parley.cluster import _packing

    packed: list[tuple[Any, ...]] = []
    real = _packing.hiredis.pack_command
    monkeypatch.setattr(_packing.hiredis, "pack_command", lambda args: packed.append(args) or real(args))
    one = await Bus.connect(redis_url + "?health_check_interval=7", prefix=prefix)
    two = await Bus.connect(redis_url, prefix=prefix)
    try:
        thread = tid()
        watching = two.follow(thread)
        follow = asyncio.ensure_future(next_of(watching))
        await asyncio.sleep(0)
        await one.publish(thread, _event("région ✓ — 20 %"), 1)
        entry_id, event, seq = await follow
        assert event == _event("région ✓ — 20 %") and seq == 1 and entry_id
        await watching.aclose()
        client: Any = one._redis
        assert await client.execute_command("CLIENT GETNAME") == client_name(prefix)
        connection = client.connection_pool.make_connection()
        assert type(connection).__module__ == "parley.cluster._packing"
        assert connection.health_check_interval == 7, "the URL's option is kept"
        await connection.disconnect()
    finally:
        await one.close()
        await two.close()
    words = {args[0] for args in packed}
    assert {b"CLIENT", b"PING", b"MULTI", b"XADD", b"XREAD"} <= words, words


def test_commands_packed_in_c_are_the_bytes_redis_py_packs_for_every_connection_kind() -> None:
    from parley.cluster._packing import packed_in_c

    commands = [
        ("XADD", "parley:events:t1", "MAXLEN", "~", 20000, "*", "event", '{"text":"région ✓"}', "seq", ""),
        ("XREAD", "COUNT", 500, "BLOCK", 5000, "STREAMS", "a", "b", "0-0", "1733400000000-3"),
        ("BLMOVE", "q", "held", 0.01, "LEFT", "RIGHT"),
        ("CLIENT SETNAME", "parley-web"),
        (b"CONFIG GET", b"maxmemory"),
        ("SET", "k", memoryview(b"raw bytes")),  # what hiredis cannot pack goes redis-py's way
        ("SET", "k", "a lone surrogate: \udcff"),  # UTF-8 cannot encode it: the connection's errors= decide
    ]
    plain = redis_connection.Connection(encoding_errors="replace")  # as the bus's connections are made
    for kind in (
        redis_connection.Connection,
        redis_connection.SSLConnection,
        redis_connection.UnixDomainSocketConnection,
    ):
        packed = packed_in_c(kind)
        assert issubclass(packed, kind)
        fast = packed(encoding_errors="replace")
        for command in commands:
            assert b"".join(fast.pack_command(*command)) == b"".join(plain.pack_command(*command)), command
    # A URL's ?encoding= holds too: hiredis knows only UTF-8, so such a connection packs as redis-py does.
    latin = packed_in_c(redis_connection.Connection)(encoding="latin-1")
    assert latin.pack_command("SET", "k", "é") == redis_connection.Connection(
        encoding="latin-1"
    ).pack_command("SET", "k", "é")


def test_commands_refuse_what_is_too_long() -> None:
    with pytest.raises(ValueError, match="text"):
        Command(kind="say", actor="ana", text="x" * 100_001)
    with pytest.raises(ValueError, match="id"):
        Command(kind="say", actor="ana", id="x" * 65)
    with pytest.raises(ValueError, match="thread_id"):
        Job(thread_id="../../etc", text="go", actor="ana", mode="start")
    # Both forms of the server's ids: the web chat's threads are dashed UUIDs, the store's own are plain hex.
    dashed = "64f0a991-b506-4041-9157-f47136de3496"
    assert Job(thread_id=dashed, text="go", actor="ana", mode="start").thread_id == dashed
    assert Job(thread_id=dashed.replace("-", ""), text="go", actor="ana", mode="start")


async def test_a_worker_takes_a_job_and_finishes_it(nodes: tuple[Bus, Bus]) -> None:
    web, worker = nodes
    job = Job(thread_id=tid(), text="write a haiku", actor="ana", mode="start")
    await web.submit(job)
    assert await worker.take("w1", WAIT_S) == job
    await worker.done("w1", job)
    assert await worker.requeue_from("w1") == 0, "a finished job is held no more"
    assert await worker.take("w1", 0.2) is None, "and not queued again"
    # Finished through a connection that did not take it (it knows the job, not the text queued): found by its id.
    other = Job(thread_id=tid(), text="write a limerick", actor="ana", mode="start")
    await web.submit(other)
    assert await worker.take("w1", WAIT_S) == other
    await web.done("w1", other)
    assert await worker.requeue_from("w1") == 0


async def test_the_job_of_a_worker_that_died_goes_to_another(nodes: tuple[Bus, Bus]) -> None:
    web, worker = nodes
    first = Job(thread_id=tid(), text="one", actor="ana", mode="start")
    second = Job(thread_id=tid(), text="two", actor="ben", mode="resume")
    await web.submit(first)
    await web.submit(second)
    assert await worker.take("w1", WAIT_S) == first
    assert await worker.take("w1", WAIT_S) == second
    # w1 dies holding both: they wait in its list, not in the queue.
    assert await web.take("w2", 0.2) is None
    assert await web.requeue_from("w1") == 2
    assert await web.take("w2", WAIT_S) == first, "the oldest first"
    assert await web.take("w2", WAIT_S) == second
    await web.done("w2", first)
    await web.done("w2", second)
    assert await web.requeue_from("w2") == 0


async def test_a_malformed_job_is_dropped_and_the_next_taken(
    nodes: tuple[Bus, Bus], raw: Any, prefix: str
) -> None:
    web, worker = nodes
    job = Job(thread_id=tid(), text="go", actor="ana", mode="start")
    await raw.lpush(f"{prefix}:jobs", '{"thread_id": "x"}', "[")
    await web.submit(job)
    assert await worker.take("w1", WAIT_S) == job
    assert await raw.lrange(f"{prefix}:taken:w1", 0, -1) == [job.model_dump_json()], (
        "only the good job is held"
    )


async def test_an_unreachable_redis_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        await Bus.connect("redis://:s3cret@127.0.0.1:1/0")
    message = str(caught.value)
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in message
    assert "s3cret" not in message


class _Proxy:
    """A TCP relay to Redis that the test can cut and restore on the same port: a network outage."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.upstream: set[str] = set()
        """The addresses Redis sees the proxied clients at."""

    def hold(self) -> None:
        """From now on Redis's answers stop on their way back to the client (requests still reach Redis)."""
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._pipes):  # both ends: Redis sees its client gone, as in a real outage
            writer.close()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.upstream.add(
            f"{up_writer.get_extra_info('sockname')[0]}:{up_writer.get_extra_info('sockname')[1]}"
        )
        self._pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: asyncio.Event) -> None:
            try:
                while data := await src.read(65536):
                    await gate.wait()
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        always = asyncio.Event()
        always.set()
        await asyncio.gather(pump(reader, up_writer, always), pump(up_reader, writer, self.flowing))
        self._pipes -= {writer, up_writer}


class _Outages(logging.Handler):
    """Counts the bus's "Redis unreachable" log lines, waking a waiter at each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "unreachable" in record.getMessage():
            self.seen.append(record.getMessage())
            self.changed.set()

    async def wait_for(self, *whats: str) -> None:
        async with asyncio.timeout(WAIT_S):
            while not all(any(s.startswith(f"{w}:") for s in self.seen) for w in whats):
                self.changed.clear()
                await self.changed.wait()


async def test_a_watcher_and_an_owner_cut_off_from_redis_miss_nothing_once_it_is_back(
    redis_url: str, prefix: str
) -> None:
    url = redis.Redis.from_url(redis_url).get_connection_kwargs()
    proxy = _Proxy((url["host"], url["port"]))
    await proxy.restore()
    far = await Bus.connect(f"redis://127.0.0.1:{proxy.port}/{url.get('db', 0)}", prefix=prefix)
    near = await Bus.connect(redis_url, prefix=prefix)
    thread = tid()
    watching = far.follow(thread, await far.last_id(thread))
    owner = far.commands(thread, "far")
    await near.publish(thread, _event("before"), 1)
    assert (await next_of(watching))[2] == 1
    outages = _Outages()
    logging.getLogger("parley.cluster").addHandler(outages)
    event = asyncio.ensure_future(asyncio.sleep(0))  # replaced below: the finally cancels whatever is pending
    command = event
    try:
        await proxy.cut()
        event = asyncio.ensure_future(anext(watching))
        command = asyncio.ensure_future(anext(owner))
        await outages.wait_for("follow", "commands")
        await near.publish(thread, _event("during"), 2)
        stop = Command(kind="stop", actor="ben")
        await near.send(thread, stop)
        await proxy.restore()
        assert (await asyncio.wait_for(event, WAIT_S))[1:] == (_event("during"), 2)
        assert await asyncio.wait_for(command, WAIT_S) == stop
    finally:
        logging.getLogger("parley.cluster").removeHandler(outages)
        event.cancel()
        command.cancel()
        await asyncio.gather(event, command, return_exceptions=True)
        await watching.aclose()
        await owner.aclose()
        await far.close()
        await near.close()
        await proxy.cut()


async def _until_blocked(raw: Any, proxy: _Proxy, command: str) -> None:
    """Until a client through `proxy` waits in Redis on a blocking `command`."""
    async with asyncio.timeout(WAIT_S):
        while not await _waiting(raw, proxy, command):  # noqa: ASYNC110  # Redis's client list: no event to await
            await asyncio.sleep(0.01)


async def _waiting(raw: Any, proxy: _Proxy, command: str) -> bool:
    return any(c["addr"] in proxy.upstream and c["cmd"] == command for c in await raw.client_list())


async def _until_empty(raw: Any, key: str) -> None:
    """Until Redis's list `key` is empty (a reader took what it held)."""
    async with asyncio.timeout(WAIT_S):
        while await raw.llen(key):  # noqa: ASYNC110  # a Redis list: no event to await
            await asyncio.sleep(0.01)


async def test_a_command_taken_by_a_reader_cancelled_before_it_got_it_reaches_the_next_owner(
    redis_url: str, prefix: str, raw: Any
) -> None:
    """Redis hands the command over, but the owner is stopped (it lets the conversation go) before the answer
    reaches it: the command is not lost, the next owner applies it."""
    url = redis.Redis.from_url(redis_url).get_connection_kwargs()
    proxy = _Proxy((url["host"], url["port"]))
    await proxy.restore()
    far = await Bus.connect(f"redis://127.0.0.1:{proxy.port}/{url.get('db', 0)}", prefix=prefix)
    near = await Bus.connect(redis_url, prefix=prefix)
    thread = tid()
    stop = Command(kind="stop", actor="ben")
    got: list[Command] = []

    async def owner() -> None:
        async for cmd in far.commands(thread, "owner-1"):
            got.append(cmd)

    reading = asyncio.create_task(owner())
    try:
        await _until_blocked(raw, proxy, "blmove")  # the owner waits for a command ...
        proxy.hold()
        await near.send(thread, stop)
        await _until_empty(raw, f"{prefix}:commands:{thread}")  # ... Redis gives it one ...
        reading.cancel()  # ... which goes before it read the answer
        proxy.release()
        await asyncio.gather(reading, return_exceptions=True)
        assert got == []
        following = near.commands(thread, "owner-2")
        assert await next_of(following) == stop
        await following.aclose()
    finally:
        reading.cancel()
        await far.close()
        await near.close()
        await proxy.cut()


async def test_commands_an_owner_that_died_took_are_applied_by_the_next_and_applied_ones_never_again(
    nodes: tuple[Bus, Bus], raw: Any, prefix: str
) -> None:
    one, two = nodes
    thread = tid()
    first, second, third = (Command(kind="say", actor="ana", text=f"note {n}") for n in range(3))
    for cmd in (first, second, third):
        await one.send(thread, cmd)
    dying = one.commands(thread, "owner-1")
    assert await next_of(dying) == first
    assert await next_of(dying) == second  # first applied: asking for the next says so
    # owner-1 dies applying `second`: its generator never runs again (no cancel, no close).
    assert await raw.lrange(f"{prefix}:applying:{thread}:owner-1", 0, -1) == [second.model_dump_json()]
    assert await two.reclaim(thread) == 1
    following = two.commands(thread, "owner-2")
    assert [await next_of(following) for _ in range(2)] == [second, third]
    await following.aclose()  # `third` was given: applied, it is not put back
    assert await two.reclaim(thread) == 0
    assert await two.pending(thread) == 0
    assert await raw.llen(f"{prefix}:applying:{thread}:owner-2") == 0
    await dying.aclose()


async def test_dead_takers_are_the_workers_without_a_heartbeat_that_hold_jobs(
    nodes: tuple[Bus, Bus], raw: Any, prefix: str
) -> None:
    web, worker = nodes
    for n in range(2):
        await web.submit(Job(thread_id=tid(), text=f"job {n}", actor="ana", mode="start"))
    await worker.beat("alive-1", 30)
    assert await worker.take("alive-1", WAIT_S) is not None
    assert await worker.take("gone-1", WAIT_S) is not None  # and then it died, never beating
    assert await worker.take("idle-1", 0.01) is None  # took nothing before it went
    assert await web.dead_takers() == ["gone-1"]
    assert await web.requeue_from("gone-1") == 1
    assert await web.dead_takers() == []
    assert await raw.smembers(f"{prefix}:takers") == {"alive-1"}, "who holds nothing and is gone is forgotten"


async def test_a_nodes_watchers_share_one_blocking_read_and_one_joining_is_read_at_once(
    nodes: tuple[Bus, Bus], raw: Any, prefix: str
) -> None:
    """Many conversations watched on one node hold one Redis connection in a blocking read, not one each; a watcher
    that joins while that read waits (here for an hour) is not left waiting for it to end."""
    one, two = nodes
    two.block_s = 3600.0
    name = client_name(prefix)  # this test's buses (other tests may use Redis meanwhile)

    async def reading() -> list[dict[str, Any]]:
        return [c for c in await raw.client_list() if c["cmd"] == "xread" and c["name"] == name]

    threads = [tid() for _ in range(5)]
    watchers = [two.follow(t, await two.last_id(t)) for t in threads]
    pending = [asyncio.ensure_future(anext(w)) for w in watchers[:4]]
    try:
        async with asyncio.timeout(WAIT_S):
            while not await reading():  # noqa: ASYNC110  # Redis's client list: no event to await
                await asyncio.sleep(0.01)
        for i, thread in enumerate(threads[:4]):
            await one.publish(thread, _event(f"to {i}"), 1)
        got = [await asyncio.wait_for(p, WAIT_S) for p in pending]
        assert [event["text"] for _, event, _ in got] == [f"to {i}" for i in range(4)]
        blocked = await reading()
        assert len(blocked) == 1, blocked  # the node's one read waits again, for all four
        late = asyncio.ensure_future(anext(watchers[4]))  # joins while that read waits
        await one.publish(threads[4], _event("late"), 1)
        assert (await asyncio.wait_for(late, WAIT_S))[1] == _event("late")
    finally:
        for p in pending:
            p.cancel()
        for w in watchers:
            await w.aclose()


async def test_a_key_that_is_no_stream_fails_its_watcher_only(
    nodes: tuple[Bus, Bus], raw: Any, prefix: str
) -> None:
    """Something other than a stream written at a conversation's key (by another client of the same Redis) makes
    the node's shared read fail: that conversation's watcher fails with the error, the node's other watchers go on."""
    one, two = nodes
    good, bad = tid(), tid()
    await raw.set(f"{prefix}:events:{bad}", "not a stream")
    watching_good = two.follow(good, await two.last_id(good))
    first = asyncio.ensure_future(anext(watching_good))
    watching_bad = two.follow(bad, "0-0")
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await next_of(watching_bad)
        await one.publish(good, _event("still here"), 1)
        assert (await asyncio.wait_for(first, WAIT_S))[1] == _event("still here")
    finally:
        first.cancel()
        await watching_good.aclose()
        await watching_bad.aclose()


async def test_many_runs_publishing_at_once_share_round_trips_and_keep_their_order(
    nodes: tuple[Bus, Bus], raw: Any, prefix: str
) -> None:
    """Fifty runs of one node publish at once, three batches each: every stream gets its entries in order, the
    node sends them over one connection instead of one per run, and a key that holds something other than a
    stream fails only the run that publishes there."""
    one, _ = nodes
    threads = [tid() for _ in range(50)]
    bad = tid()
    await raw.set(f"{prefix}:events:{bad}", "not a stream")

    async def run(thread: str) -> None:
        for batch in range(3):
            await one.publish_many(thread, [(_event(f"{batch}.{n}"), None) for n in range(4)])

    outcomes = await asyncio.gather(*(run(t) for t in [*threads, bad]), return_exceptions=True)
    assert outcomes[:-1] == [None] * len(threads)
    assert isinstance(outcomes[-1], redis.ResponseError), outcomes[-1]
    expected = [_event(f"{batch}.{n}") for batch in range(3) for n in range(4)]
    for thread in threads:
        entries = await raw.xrange(f"{prefix}:events:{thread}")
        assert [json.loads(fields["event"]) for _, fields in entries] == expected
        assert 0 < await raw.ttl(f"{prefix}:events:{thread}") <= TTL_S
    mine = [c for c in await raw.client_list() if c["name"] == client_name(prefix)]
    assert len(mine) <= 2, mine  # a connection each for the two nodes: the one that published, and the other


async def test_streamed_pieces_wait_for_company_and_leave_the_expiry_as_it_is(
    nodes: tuple[Bus, Bus], raw: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Most of what a run sends is streamed pieces: pieces alone wait for something else to go with them (here for
    as long as it takes), and anything else goes at once and takes them along. Only what is not a piece pushes a
    stream's expiry back: half the commands a worker sent were EXPIREs."""
    monkeypatch.setattr(_outbound, "PIECES_WAIT_S", 60.0)
    one, _ = nodes
    streaming, other = tid(), tid()
    key = f"{prefix}:events:{streaming}"
    await one.publish_many(streaming, [(_event("first"), 1)])
    assert await raw.xlen(key) == 1 and 0 < await raw.ttl(key) <= TTL_S
    await raw.expire(key, 100)
    piece = {"type": "chunk", "source": "writer", "content": "Hel", "turn": 1}
    held = asyncio.ensure_future(one.publish_many(streaming, [(piece, None)]))
    for _ in range(3):  # the piece is handed over and waits
        await asyncio.sleep(0)
    assert await raw.xlen(key) == 1 and not held.done(), "a piece alone waits for company"
    await one.publish_many(other, [(_event("the whole message"), 2)])  # at once, and the piece with it
    await asyncio.wait_for(held, WAIT_S)
    assert [json.loads(f["event"]) for _, f in await raw.xrange(key)] == [_event("first"), piece]
    assert 0 < await raw.ttl(key) <= 100, "a piece leaves the expiry as it was"
    assert await raw.ttl(f"{prefix}:events:{other}") > 100
