"""This process as one node of a cluster: several processes (web replicas, workers) sharing PostgreSQL and Redis,
each conversation's run owned by exactly one of them at a time.

Off unless `PARLEY_REDIS_URL` is set: then everything stays in one process, as without a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..events import RunResult, RunStartedEvent
from ._bus import Bus
from ._commands import Job
from ._lease import Leases
from ._relay import Relay
from ._remote import RemoteRun

if TYPE_CHECKING:
    from ..conversation import Conversation
    from ..run import Run
    from ..store import Lease, Store

__all__ = ["REDIS_ENV", "Node", "announce_revoked"]

log = logging.getLogger("parley.cluster")
REDIS_ENV = "PARLEY_REDIS_URL"
LEASE_TTL_ENV = "PARLEY_LEASE_TTL_S"
PREFIX_ENV = "PARLEY_REDIS_PREFIX"
"""The start of every Redis key of the cluster (default `parley`): clusters sharing one Redis keep apart by it."""
RUNS_ENV = "PARLEY_RUNS"
"""'here' (the default): a process that is given a message runs the conversation itself; 'workers': web
processes leave every run to `parley worker` processes and only relay."""
DEFAULT_TTL_S = 10.0
RECHECK_S = 10.0
"""How often a page's view of a run asks the store whether its user may still see it, besides being told."""


@dataclass
class _ThreadLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    """How many hold or await it."""


async def announce_revoked(tid: str, member: str) -> bool:
    """From a process that is no node (`parley share --revoke`): tell the cluster `PARLEY_REDIS_URL` names that
    `member` lost their access to `tid` (see Node.revoke). False when it names none."""
    url = os.environ.get(REDIS_ENV, "").strip()
    if not url:
        return False
    bus = await Bus.connect(url, prefix=os.environ.get(PREFIX_ENV, "").strip() or "parley")
    try:
        await bus.announce_revoked(tid, member)
    finally:
        await bus.close()
    return True


class Node:
    """One process of the cluster: the runs it owns (each under a lease) and its view of the others'."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        name: str | None = None,
        runs_here: bool = True,
    ) -> None:
        self.store = store
        self.bus = bus
        self.runs_here = runs_here
        """False on a web process of a cluster with workers: it starts no run, a worker does (see say)."""
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.leases = Leases(store, self.name, ttl_s)
        self.ttl_s = ttl_s
        self.relays: dict[str, Relay] = {}
        self._locks: dict[str, _ThreadLock] = {}
        """One lock per conversation some of this node's work is on now; it goes when nobody holds or awaits it."""
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._revoked: dict[tuple[str, str], set[Callable[[], None]]] = {}
        self._revocations: asyncio.Task[None] | None = None
        self.on_carried: Callable[[Conversation, Run], None] = lambda conv, run: None
        """Told of each run this node carried on after its owner died."""

    @classmethod
    async def from_env(cls, store: Store) -> Node | None:
        """The cluster `PARLEY_REDIS_URL` names, or None when it names none."""
        url = os.environ.get(REDIS_ENV, "").strip()
        if not url:
            return None
        if not store.url.startswith("postgresql"):
            raise ConfigError(
                f"{REDIS_ENV} is set, so this process joins a cluster, and a cluster shares its conversations "
                f"through PostgreSQL: set PARLEY_DATABASE_URL to a postgresql:// URL (the store is {store.url})"
            )
        ttl = float(os.environ.get(LEASE_TTL_ENV, "") or DEFAULT_TTL_S)
        runs = os.environ.get(RUNS_ENV, "here").strip() or "here"
        if runs not in ("here", "workers"):
            raise ConfigError(
                f"{RUNS_ENV}={runs!r}: say 'here' (this process runs conversations) or 'workers'"
            )
        prefix = os.environ.get(PREFIX_ENV, "").strip() or "parley"
        return cls(store, await Bus.connect(url, prefix=prefix), ttl_s=ttl, runs_here=runs == "here")

    @contextlib.asynccontextmanager
    async def _lock(self, tid: str) -> AsyncIterator[None]:
        """Hold the conversation's lock: one thing at a time changes who drives it on this node."""
        held = self._locks.get(tid)
        if held is None:
            held = self._locks[tid] = _ThreadLock()
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._locks[tid]

    # -- a human message, from this node -----------------------------------------------------------------

    async def say(
        self, conversation: Conversation, text: str, actor: str, *, here: bool | None = None
    ) -> tuple[Conversation, Run | RemoteRun]:
        """`actor` says `text` in `conversation`'s thread: to the run live on this node, to the one live on
        another (sent there), or as a new run, owned by this node (`here`, by default `runs_here`) or by a worker.
        Returns the conversation as it now stands (rebuilt from the store when another node ran it meanwhile) and
        the run the message went to."""
        tid = conversation.thread_id
        assert tid is not None, "a cluster shares stored conversations only"
        async with self._lock(tid):
            relay = self.relays.get(tid)
            if relay is not None:  # this node owns the conversation: its run, or the next one
                fresh = not relay.conversation.running
                run = relay.conversation.say(text, author=actor)
                if fresh:
                    relay.watch(run)
                return relay.conversation, run
            if not (self.runs_here if here is None else here):  # a worker starts it: watch it from here
                idle = await self.leases.holder(tid) is None
                remote = await self.watch(conversation, actor, next_run=True)
                if idle:
                    await self.bus.submit(Job(thread_id=tid, text=text, actor=actor, mode="start"))
                else:
                    await self._hand_over(remote, text, here=False)
                return remote.conversation, remote
            lease = await self.leases.acquire(tid)
            if lease is None:
                remote = await self.watch(conversation, actor, next_run=True)
                await self._hand_over(remote, text, here=True)
                return remote.conversation, remote
            conversation = await self._current(conversation)
            relay = self._own(conversation, lease)
            run = conversation.say(text, author=actor)
            relay.watch(run)
            return conversation, run

    async def _hand_over(self, remote: RemoteRun, text: str, *, here: bool) -> None:
        """Send a message to the process that owns the conversation. Should it have let go meanwhile (its run
        ended), the message waits with nobody to read it: this process (`here`) or a worker takes it up."""
        remote.say(text)
        await remote.close()  # sent
        tid = remote.thread_id
        if await self.leases.holder(tid) is None and await self.bus.pending(tid) > 0:
            if here:
                await self.pick_up(tid)
            else:
                await self.bus.submit(Job(thread_id=tid, text="", actor=remote.actor, mode="commands"))

    async def watch(self, conversation: Conversation, actor: str, *, next_run: bool = False) -> RemoteRun:
        """The run another node drives in `conversation`'s thread, as seen from here (`next_run`: the one about to
        start there, for a message just sent)."""
        assert conversation.thread_id is not None
        remote = RemoteRun(self, await self._current(conversation), actor)
        await remote.catch_up(next_run=next_run)
        return remote

    async def live_elsewhere(self, tid: str) -> bool:
        """Whether another node drives a run of `tid` now."""
        holder = await self.leases.holder(tid)
        return holder is not None and holder != self.name

    async def _current(self, conversation: Conversation) -> Conversation:
        """`conversation`, or a copy rebuilt from the store when the store holds more than it has seen."""
        from ..conversation import Conversation

        tid = conversation.thread_id
        assert tid is not None
        stored = await self.store.load_events(tid)
        if len(stored) == len(conversation.history) and not conversation.running:
            return conversation
        fresh = await Conversation.resume(self.store, tid)
        if fresh.running:  # cannot happen: a resumed conversation is idle
            raise AssertionError(tid)
        return fresh

    def _own(self, conversation: Conversation, lease: Lease) -> Relay:
        relay = Relay(self, conversation, lease)
        relay.begin()
        self.relays[lease.thread_id] = relay
        self._keep(self._let_go(relay))
        return relay

    async def _let_go(self, relay: Relay) -> None:
        """The lease goes once the conversation has no run in progress, its events are all out and no command
        waits for it; a command that came as it went is taken up again (see pick_up)."""
        tid = relay.thread_id
        while True:
            await relay.idle.wait()
            relay.applied.clear()
            if (
                not relay.lost and await self.bus.pending(tid) > 0
            ):  # a message waits: the relay takes it first
                await relay.applied.wait()
                continue
            async with self._lock(tid):
                if relay.conversation.running or not relay.idle.is_set():  # a message started the next run
                    continue
                self.relays.pop(tid, None)
                await relay.close()
            break
        if await self.bus.pending(tid) > 0:
            await self.pick_up(tid, relay.conversation)

    async def pick_up(self, tid: str, conversation: Conversation | None = None) -> None:
        """Commands wait for `tid` and nobody owns it: own it now and apply them (a message starts a run)."""
        from ..conversation import Conversation

        if tid in self.relays:
            return
        lease = await self.leases.acquire(tid)
        if lease is None:
            return  # another process owns it: it reads them
        if conversation is None or conversation.running:
            conversation = await Conversation.resume(self.store, tid)
        else:
            conversation = await self._current(conversation)
        self._own(conversation, lease)

    def _keep(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, referenced until it is done (a task nobody holds may be collected)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- shared rooms: a member's access ends at once on every node ----------------------------------------

    async def revoke(self, tid: str, member: str) -> None:
        """Tell every node that `member` lost their access to `tid` (the store says so already): the pages and
        streams they have open on it end now, however quiet its run."""
        await self.bus.announce_revoked(tid, member)

    async def on_revoked(self, tid: str, user: str, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` as soon as any node says `user` lost their access to `tid` (see revoke), from now on.
        Returns what stops it."""
        key = (tid, user)
        if self._revocations is None:
            since = await self.bus.revocations_since()
            if self._revocations is None:
                self._revocations = asyncio.get_running_loop().create_task(
                    self._tell_revoked(since), name="parley-node-revocations"
                )
        self._revoked.setdefault(key, set()).add(listener)

        def forget() -> None:
            listeners = self._revoked.get(key)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._revoked[key]

        return forget

    async def end_if_revoked(
        self, tid: str, user: str, view: asyncio.Future[Any], *, recheck_s: float = RECHECK_S
    ) -> bool:
        """Wait until `view` (a page showing `user` a run of `tid`) is done, or until a node says `user` lost their
        access and the store agrees: then cancel it and return True (the page says why). The store is also asked
        every `recheck_s`, for a revoke no node was told of (made by a process outside the cluster)."""
        told = asyncio.Event()
        forget = await self.on_revoked(tid, user, told.set)
        waiting = asyncio.ensure_future(told.wait())
        try:
            while True:
                await asyncio.wait([view, waiting], timeout=recheck_s, return_when=asyncio.FIRST_COMPLETED)
                if view.done():
                    return False
                access = await self.store.access(user, tid)
                if access is None:
                    view.cancel()
                    return True
                if access == "owner":  # sharing revokes members only: nothing more to look up
                    await asyncio.wait([view])
                    return False
                if told.is_set():  # said by something else than the store: the view goes on
                    told.clear()
                    waiting = asyncio.ensure_future(told.wait())
        finally:
            waiting.cancel()
            forget()

    async def _tell_revoked(self, since: str) -> None:
        async for key in self.bus.revocations(since):
            for listener in list(self._revoked.get(key, ())):
                try:
                    listener()
                except Exception:
                    log.exception("could not end a view of %s for %s", *key)

    # -- runs whose owner died ----------------------------------------------------------------------------

    def start_sweeping(self) -> None:
        """Carry on, from their last checkpoint, the runs whose owner died (its lease expired mid-run). Not on a web
        process that leaves runs to workers: they carry them on."""
        if self._sweeper is None and self.runs_here:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="parley-node-sweep")

    async def _sweep(self) -> None:
        while True:
            try:
                await self.bus.beat(self.name, self.ttl_s * 3)
                for (
                    worker
                ) in await self.bus.dead_takers():  # jobs a dead worker took before owning their runs
                    log.warning("requeued %d job(s) of %s, gone", await self.bus.requeue_from(worker), worker)
                for tid in await self.leases.orphans():
                    await self._carry_on_logged(tid)
            except Exception:
                log.exception("could not look for runs whose owner died")
            await asyncio.sleep(self.ttl_s / 2)  # a period, not a wait for something

    async def _carry_on_logged(self, tid: str) -> None:
        """One orphan's failure does not hold up the others (it is tried again at the next sweep)."""
        try:
            await self.carry_on(tid)
        except Exception:
            log.exception("could not carry on the run of %s", tid)

    async def carry_on(self, tid: str) -> Run | None:
        """Take over the unfinished run of `tid`, if its lease is free: the team goes on from its checkpoint."""
        from ..conversation import Conversation

        async with self._lock(tid):
            if tid in self.relays:
                return None
            lease = await self.leases.acquire(tid)
            if lease is None:
                return None
            try:
                conversation = await Conversation.resume(self.store, tid)
            except ConfigError as exc:
                log.warning("cannot carry on %s: %s", tid, exc)
                await self.leases.release(lease, run_open=False)
                return None
            history = conversation.history
            begun = max((i for i, e in enumerate(history) if isinstance(e, RunStartedEvent)), default=None)
            started = history[begun] if begun is not None else None
            if not isinstance(started, RunStartedEvent) or any(
                isinstance(e, RunResult) for e in history[begun:]
            ):
                await self.leases.release(lease, run_open=False)
                return None
            relay = self._own(conversation, lease)
            run = conversation.carry_on(started.content)
            relay.watch(run)
            log.warning("carried on the run of %s after its owner died", tid)
            self.on_carried(conversation, run)
            return run

    async def close(self, *, hand_on: bool = False) -> None:
        """Leave the cluster: every run this node owns stops, or with `hand_on` goes on in another process (its
        lease let go with the run open, another node carries it on from its last checkpoint; nothing more of it
        is stored from here)."""
        for task in (self._sweeper, self._revocations):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for relay in list(self.relays.values()):
            run = relay.conversation.current_run
            live = run if run is not None and relay.conversation.running else None
            if hand_on:
                await relay.close()  # first: from now on the run's writes are refused
            if live is not None:
                live.stop()
                await live.wait()
            if not hand_on:
                await relay.close()
        self.relays.clear()
        await self.bus.close()
