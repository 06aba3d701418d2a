"""The cluster's Redis side: a live run's events to every node, commands to the run's owner, jobs to workers.

Keys, under a prefix (``parley`` by default):
- ``{prefix}:events:{thread}``: a stream of the run's events, capped and expiring an hour after its last write;
- ``{prefix}:commands:{thread}``: a list of commands for whoever owns the run now or next, and
  ``{prefix}:applying:{thread}:{owner}`` the one each owner is applying, ``{prefix}:appliers:{thread}`` who
  read them (see `Bus.commands`);
- ``{prefix}:revoked``: the members of shared rooms whose access just ended, for every node's pages;
- ``{prefix}:jobs``, ``{prefix}:taken:{worker}`` and ``{prefix}:takers``: the workers' queue, what each worker
  holds, and who took any.

Everything read back is treated as hostile: an entry that is not what the bus writes is logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from pydantic import ValidationError
from redis.asyncio.connection import Connection, ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from ..errors import ConfigError
from ..paths import is_server_id
from ._commands import Command, Job
from ._follow import Followers
from ._outbound import Outbound
from ._packing import packed_in_c

__all__ = ["Bus", "client_name"]

log = logging.getLogger("parley.cluster")

STREAM_MAXLEN = 20_000
"""About how many events a run's stream keeps (trimmed approximately, as Redis does it cheaply)."""
TTL_S = 3600
"""A stream or command list nobody wrote to for this long is dropped: its run has ended."""
BLOCK_S = 5.0
"""How long a blocking read waits on the server at most (a watcher of a quiet run looks at the store this often)."""
_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)
_CONNECT_TIMEOUT_S = 5.0
T = TypeVar("T")


def _redact(url: str) -> str:
    """The URL for messages: password masked."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparseable Redis URL>"


def client_name(prefix: str) -> str:
    """The name a node's connections give themselves in Redis: `parley` or the cluster's key prefix (Redis refuses
    spaces in a name)."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", prefix)[:100] or "parley"


def _decode_event(
    tid: str, entry_id: str, fields: dict[str, str]
) -> tuple[dict[str, Any], int | None] | None:
    try:
        event = json.loads(fields["event"])
        raw_seq = fields.get("seq", "")
        seq = int(raw_seq) if raw_seq else None
    except (KeyError, ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        log.warning("skipped stream entry %s of thread %s: %s", entry_id, tid, exc)
        return None
    if not isinstance(event, dict):
        log.warning("skipped stream entry %s of thread %s: the event is not an object", entry_id, tid)
        return None
    return event, seq


class Bus:
    """One node's connection to the cluster's Redis."""

    def __init__(self, client: redis.Redis, prefix: str, shown: str, stream_cap: int = STREAM_MAXLEN) -> None:
        self._redis = client
        self._prefix = prefix
        self.block_s = BLOCK_S
        """How long a blocking read waits on the server before it looks again (a cancelled reader never waits)."""
        self.url = shown
        """The Redis URL, password masked."""
        wake = self._key("wake", uuid.uuid4().hex)
        self._followers = Followers(client, wake, self._retrying, lambda: self._block_ms)
        """One blocking read for every stream this node follows."""
        self._taken: dict[str, str] = {}
        """The jobs this node took and has not finished, as they were queued (by id; see done)."""
        self._outbound = Outbound(client, stream_cap, TTL_S)
        """Every run's events in shared round trips (a run's stream is capped at about `stream_cap` entries)."""

    @classmethod
    async def connect(cls, url: str, *, prefix: str = "parley", stream_cap: int = STREAM_MAXLEN) -> Bus:
        """Connect to Redis at `url` and check it answers; `ConfigError` naming the URL if it does not.

        Keys start with `prefix`; a run's stream keeps about its last `stream_cap` events.
        """
        shown = _redact(url)
        options: dict[str, Any] = {
            "decode_responses": True,
            "encoding_errors": "replace",  # bytes someone else wrote must not break decoding
            "socket_connect_timeout": _CONNECT_TIMEOUT_S,
            "health_check_interval": 30,
            "client_name": client_name(prefix),  # Redis's CLIENT LIST then says whose each connection is
            # A blip is retried quickly; a longer outage is the loops' business (_retrying), which log it.
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        }
        try:
            # What the URL says comes first, as in redis-py's from_url; then the packing (see _packing.py).
            options.update(parse_url(url))
            options["connection_class"] = packed_in_c(options.get("connection_class", Connection))
            client = redis.Redis.from_pool(ConnectionPool(**options))
        except ValueError as exc:
            raise ConfigError(f"cannot use Redis URL {shown}: {exc} (expected redis://HOST:PORT/DB)") from exc
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S * 2):
                await client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            await client.aclose()
            raise ConfigError(
                f"cannot reach Redis at {shown}: {type(exc).__name__}: {str(exc) or 'no answer'}; "
                "start Redis there or point parley at a running one"
            ) from exc
        return cls(client, prefix, shown, stream_cap)

    async def close(self) -> None:
        await self._outbound.close()
        await self._followers.close()
        await self._redis.aclose()

    @property
    def _block_ms(self) -> int:
        return max(1, int(self.block_s * 1000))

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, again after a pause while Redis cannot be reached (it restarts, the network drops)."""
        attempt = 0
        while True:
            try:
                return await call()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                pause = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                # The first failure and then about one a minute: a long outage must not flood the log.
                level = logging.WARNING if attempt % 30 == 0 else logging.DEBUG
                log.log(
                    level,
                    "%s: Redis at %s unreachable (%s), trying again in %g s",
                    what,
                    self.url,
                    exc,
                    pause,
                )
                attempt += 1
                await asyncio.sleep(pause)

    # ---- a live run's events ----

    async def publish(self, tid: str, event: dict[str, Any], seq: int | None) -> str:
        """Add `event` (with the store's `seq`, None for an unstored chunk) to the thread's stream; its entry id."""
        (entry_id,) = await self.publish_many(tid, [(event, seq)])
        return entry_id

    async def publish_many(self, tid: str, events: list[tuple[dict[str, Any], int | None]]) -> list[str]:
        """Add `events` (each with its seq, as `publish`) to the thread's stream in order; their entry ids. What every
        run of this process publishes meanwhile goes in the same round trip (see _outbound.py)."""
        entries: list[dict[FieldT, EncodableT]] = [
            {"event": json.dumps(event, separators=(",", ":")), "seq": "" if seq is None else str(seq)}
            for event, seq in events
        ]
        urgent = any(event.get("type") != "chunk" for event, _ in events)
        return await self._outbound.add(self._key("events", tid), entries, urgent=urgent)

    async def last_id(self, tid: str) -> str:
        """The id of the thread's newest stream entry; ``"0-0"`` when there is none."""
        return await self._newest(self._key("events", tid))

    async def _newest(self, key: str) -> str:
        newest = await self._redis.xrevrange(key, count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def follow(
        self, tid: str, after: str = "$"
    ) -> AsyncGenerator[tuple[str, dict[str, Any], int | None]]:
        """The thread's events after entry `after` (``"$"``: from now on) as (entry id, event, seq), until cancelled."""
        async for entry in self.follow_quietly(tid, after):
            if entry is not None:
                yield entry

    async def follow_quietly(
        self, tid: str, after: str = "$"
    ) -> AsyncGenerator[tuple[str, dict[str, Any], int | None] | None]:
        """As `follow`, and None each time nothing came for `block_s` (a watcher then looks at the store: Redis may
        have lost what it missed)."""
        key = self._key("events", tid)
        last = await self._retrying("follow", lambda: self.last_id(tid)) if after == "$" else after
        batches = self._followers.entries(key, last, lambda: self.block_s)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                if batch is None:
                    yield None
                for entry_id, fields in batch or ():
                    decoded = _decode_event(tid, entry_id, fields)
                    if decoded is not None:
                        yield entry_id, *decoded

    # ---- commands to the run's owner ----

    async def send(self, tid: str, cmd: Command) -> None:
        """Queue `cmd` for the thread's owner, whoever it is now or next."""
        key = self._key("commands", tid)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, cmd.model_dump_json())
            pipe.expire(key, TTL_S)
            await pipe.execute()

    async def pending(self, tid: str) -> int:
        """How many commands wait for the thread's owner."""
        return int(await _awaited(self._redis.llen(self._key("commands", tid))))

    async def commands(self, tid: str, owner: str) -> AsyncGenerator[Command]:
        """The thread's commands in the order sent, each to one reader only, until cancelled.

        A command is taken into `owner`'s list of commands being applied and leaves it once the next one is asked
        for (it was applied): a reader cancelled while it waits, or before it was given the command it took,
        puts it back at the head of the queue; one that died leaves it for the next owner (`reclaim`)."""
        key, held = self._key("commands", tid), self._key("applying", tid, owner)
        wait: Any = self.block_s  # decimal seconds, as in take
        take = functools.partial(self._redis.blmove, key, held, wait, "LEFT", "RIGHT")
        taken: str | None = None
        given = False
        try:
            await self._retrying("commands", functools.partial(self._applier, tid, owner))
            while True:
                taken, given = None, False
                taken = await self._retrying("commands", lambda: _awaited(take()))
                if taken is None:
                    continue
                try:
                    command = Command.model_validate_json(taken)
                except ValidationError as exc:
                    log.warning("skipped a command for thread %s: %s", tid, _problems(exc))
                    await self._retrying("commands", functools.partial(self._applied, held, taken))
                    continue
                given = True
                yield command
                await self._retrying("commands", functools.partial(self._applied, held, taken))
        except (asyncio.CancelledError, GeneratorExit):
            await self._settle(tid, held, taken if given else None)
            raise

    async def _applier(self, tid: str, owner: str) -> None:
        """`owner` reads the thread's commands: `reclaim` looks in its list."""
        key = self._key("appliers", tid)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, owner)
            pipe.expire(key, TTL_S)
            await pipe.execute()

    async def _applied(self, held: str, raw: str) -> None:
        await _awaited(self._redis.lrem(held, 1, raw))

    async def _settle(self, tid: str, held: str, applied: str | None) -> None:
        """A reader goes: what it applied leaves its list, what it took but never applied goes back to the head of
        the queue (in order). A Redis that cannot be reached leaves them for the next owner's `reclaim`."""
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                if applied is not None:
                    await self._applied(held, applied)
                await self._put_back(held, self._key("commands", tid))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("commands of thread %s left for its next owner: %s", tid, exc)

    async def _put_back(self, held: str, key: str) -> int:
        moved = 0
        # Newest first, each to the head: the oldest ends up first again.
        while await _awaited(self._redis.lmove(held, key, "RIGHT", "LEFT")) is not None:
            moved += 1
        if moved:
            await _awaited(self._redis.expire(key, TTL_S))
        return moved

    async def reclaim(self, tid: str) -> int:
        """Put the commands earlier owners of the thread took and never applied (they died, or lost the thread)
        back at the head of its queue; how many. Called by a new owner before it reads any."""
        key, moved = self._key("commands", tid), 0
        for owner in await _awaited(self._redis.smembers(self._key("appliers", tid))):
            moved += await self._put_back(self._key("applying", tid, str(owner)), key)
        return moved

    # ---- shared rooms: a member's access ended ----

    async def announce_revoked(self, tid: str, member: str) -> None:
        """Tell every node that `member` may no longer see thread `tid` (its owner revoked their access)."""
        key = self._key("revoked")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, {"thread": tid, "member": member}, maxlen=1000, approximate=True)
            pipe.expire(key, TTL_S)
            await pipe.execute()

    async def revocations_since(self) -> str:
        """Where `revocations` starts from to give those announced from now on."""
        return await self._retrying("revocations", lambda: self._newest(self._key("revoked")))

    async def revocations(self, after: str) -> AsyncGenerator[tuple[str, str]]:
        """(thread, member) of each access revoked after entry `after`, until cancelled."""
        key, last = self._key("revoked"), after
        while True:
            read = functools.partial(self._redis.xread, {key: last}, count=100, block=self._block_ms)
            for _key, entries in await self._retrying("revocations", read) or ():
                for entry_id, fields in entries:
                    last = str(entry_id)
                    tid, member = fields.get("thread", ""), fields.get("member", "")
                    if is_server_id(tid) and 0 < len(member) <= 200:
                        yield tid, member
                    else:
                        log.warning("skipped revocation entry %s: not a thread and a member", last)

    # ---- the workers' queue ----

    async def submit(self, job: Job) -> None:
        """Queue `job` for the next free worker."""
        await _awaited(self._redis.lpush(self._key("jobs"), job.model_dump_json()))

    async def take(self, worker: str, timeout_s: float) -> Job | None:
        """The oldest queued job, now held by `worker` until `done`; None if none came within `timeout_s`."""
        held = self._key("taken", worker)
        await _awaited(self._redis.sadd(self._key("takers"), worker))  # see dead_takers
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left := deadline - loop.time()) > 0:
            # Redis takes decimal seconds here since 6.0; redis-py's hint says int.
            wait: Any = max(left, 0.01)
            raw = await _awaited(self._redis.blmove(self._key("jobs"), held, wait, "RIGHT", "LEFT"))
            if raw is None:
                return None
            try:
                job = Job.model_validate_json(raw)
            except ValidationError as exc:
                await _awaited(self._redis.lrem(held, 1, raw))
                log.warning("dropped a job from the queue: %s", _problems(exc))
                continue
            self._taken[job.id] = raw
            return job
        return None

    async def done(self, worker: str, job: Job) -> None:
        """`worker` has finished with `job`: it is no longer held."""
        held = self._key("taken", worker)
        raw = self._taken.pop(job.id, None)  # as taken: removed in one command
        if raw is not None and await _awaited(self._redis.lrem(held, 0, raw)):
            return
        for raw in await _awaited(self._redis.lrange(held, 0, -1)):
            if _job_id(raw) == job.id:
                await _awaited(self._redis.lrem(held, 0, raw))

    async def beat(self, worker: str, ttl_s: float) -> None:
        """`worker` is alive for `ttl_s` more seconds (its sweeper says so every half lease)."""
        await _awaited(self._redis.set(self._key("alive", worker), "1", px=max(1, int(ttl_s * 1000))))

    async def dead_takers(self) -> list[str]:
        """Workers that hold taken jobs and whose heartbeat ran out: they died between taking a job and owning
        its run."""
        takers, dead = self._key("takers"), []
        for worker in map(str, await _awaited(self._redis.smembers(takers))):
            if await _awaited(self._redis.exists(self._key("alive", worker))):
                continue
            if await _awaited(self._redis.llen(self._key("taken", worker))):
                dead.append(worker)
            else:  # gone holding nothing: forgotten
                await _awaited(self._redis.srem(takers, worker))
        return dead

    async def requeue_from(self, worker: str) -> int:
        """Put every job `worker` held back at the head of the queue (it died); how many."""
        held, queue = self._key("taken", worker), self._key("jobs")
        moved = 0
        # Newest first, each to the taking end: the oldest held job is taken again first.
        while await _awaited(self._redis.lmove(held, queue, "LEFT", "RIGHT")) is not None:
            moved += 1
        return moved


def _awaited(result: Awaitable[T] | T) -> Awaitable[T]:
    """The command's awaitable: redis-py hints one signature for its sync and asyncio clients."""
    return cast("Awaitable[T]", result)


def _job_id(raw: str) -> str | None:
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return str(parsed.get("id")) if isinstance(parsed, dict) else None


def _problems(exc: ValidationError) -> str:
    """The validation problems without the input (which may be huge, or hold what someone typed)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
