"""The API's conversations: who may read or write which (its owner, and the members of a shared room), the live
ones this process drives, and a wake-up for each stored write.

A conversation the API creates or continues stays here while it is in use, so a second request reaches the same
run (its pending approvals, its interrupt). One idle too long is closed when room is needed, and is rebuilt from
the store on its next request (`Conversation.resume`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..catalog import TeamEntry, current_teams
from ..cluster import Node, RemoteRun
from ..conversation import Conversation
from ..errors import ConfigError
from ..paths import inside, is_server_id
from ..run import Run
from ..store import Store, ThreadRow

__all__ = [
    "NOT_YOURS",
    "WATCH_ONLY",
    "ApiError",
    "Hub",
    "StoreGetter",
    "model_string",
    "pending",
    "scripts_dir",
]

ClusterGetter = Callable[[], Awaitable[Node | None]]
"""The process's cluster, if it belongs to one (the web chat's: PARLEY_REDIS_URL)."""
StoreGetter = Callable[[], Awaitable[Store]]
"""The process's store (the web chat's, when the API is mounted on its server)."""
NOT_YOURS = (
    "This conversation is not yours: it belongs to another user, and this token signs in {user}. "
    "Use a token of its owner's."
)
"""Said (HTTP 403) when a token names a conversation of another user, as the web chat says it."""
WATCH_ONLY = "you may watch this conversation: its owner shared it read-only"
"""Said (HTTP 403) to a read-only member who tries to write (say, interrupt, stop, approve, answer, resolve)."""
SCRIPTS_ENV = "PARLEY_SCRIPTS"
KEEP = 64
"""Idle conversations kept in memory; beyond this the least recently used idle ones are closed."""


class ApiError(Exception):
    """A request the API refuses: its HTTP status and what to tell the client."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def scripts_dir() -> Path:
    """The folder of the scripted demos a client may name (`scripted:FILE`), as the web chat's picker offers."""
    return Path(os.environ.get(SCRIPTS_ENV, "").strip() or "scripts")


def model_string(requested: str | None) -> str | None:
    """The model a client asked for, as the server runs it. A scripted model is named by its file name in the
    scripts folder, never by a server path."""
    if requested is None or not requested.strip():
        return None
    text = requested.strip()
    if not text.startswith("scripted:"):
        return text
    name = text.removeprefix("scripted:")
    folder = scripts_dir()
    try:
        path = inside(folder.resolve(), name)
    except ValueError:
        path = None
    if path is None or "/" in name or not path.is_file():
        raise ApiError(
            400,
            f"no scripted model {name!r}: name one of the scripts in the server's {SCRIPTS_ENV} folder by its file "
            "name, e.g. scripted:demo.yaml",
        )
    return f"scripted:{path}"


class Hub:
    """The conversations the API serves, by thread id."""

    def __init__(self, store: StoreGetter, *, keep: int = KEEP, cluster: ClusterGetter | None = None) -> None:
        self._store = store
        self._cluster = cluster
        self._keep = keep
        self._live: dict[str, Conversation] = {}
        self._copies: dict[str, Conversation] = {}
        """In a cluster: this process's one copy of each conversation another process drives that a client sent a
        command to (what a view of its run is made from), kept while that run goes on."""
        self._locks: dict[str, asyncio.Lock] = {}
        self._wakers: dict[str, set[asyncio.Event]] = {}
        self.histories: dict[tuple[str, str], str] = {}
        """(user, digest of a chat history an OpenAI client sent) -> the conversation it continues."""

    async def store(self) -> Store:
        return await self._store()

    async def node(self) -> Node | None:
        """The cluster this process belongs to, if any (the web chat's)."""
        return await self._cluster() if self._cluster is not None else None

    # -- teams -------------------------------------------------------------------------------------------

    def teams(self) -> list[TeamEntry]:
        """The team files, parsed again only when one changed (see current_teams)."""
        return current_teams()

    def team(self, name: str) -> TeamEntry:
        """A team by name (never a path: a client does not name the server's files)."""
        entries = self.teams()
        entry = next((e for e in entries if e.name == name), None)
        if entry is None:
            names = ", ".join(sorted(e.name for e in entries if e.spec is not None)) or "(none)"
            raise ApiError(404, f"no team '{name}': the teams are {names} (GET /api/v1/teams lists them)")
        if entry.spec is None:
            raise ApiError(409, f"team '{name}' is broken: {entry.error}")
        return entry

    # -- conversations -----------------------------------------------------------------------------------

    async def owned(self, user: str, tid: str) -> ThreadRow:
        """The stored conversation `tid` if `user` may write to it (its owner, or a member it was shared with to
        write): for saying, interrupting, stopping and deciding. 400 for an id of another form, 404, 403."""
        return await self._room(user, tid, write=True)

    async def watched(self, user: str, tid: str) -> ThreadRow:
        """The stored conversation `tid` if `user` may read it (its owner or any member): for reading it and
        streaming its events. 400, 404, 403 as `owned`."""
        return await self._room(user, tid, write=False)

    async def still_in(self, user: str, tid: str) -> bool:
        """Whether `user` may still read `tid`: an open event stream asks on each wake-up, and ends once the owner
        revoked its reader (or the conversation was deleted)."""
        return await (await self.store()).access(user, tid) is not None

    async def _room(self, user: str, tid: str, *, write: bool) -> ThreadRow:
        if not is_server_id(tid):
            raise ApiError(400, f"{tid[:80]!r} is not a conversation id of this server (32 hex digits)")
        store = await self.store()
        row = await store.get_thread(tid)
        if row is None:
            raise ApiError(404, f"no conversation {tid}")
        if row.owner == user:
            return row
        role = await store.access(user, tid)
        if role is None:
            raise ApiError(403, NOT_YOURS.format(user=user))
        if write and role == "read":
            raise ApiError(403, WATCH_ONLY)
        return row

    async def create(self, user: str, team: str, model: str | None, title: str) -> Conversation:
        entry = self.team(team)
        assert entry.spec is not None
        try:
            conv = Conversation(entry.spec, model=model_string(model))
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from exc
        why = conv.cannot_drive()
        if why:
            await conv.close()
            raise ApiError(
                400,
                f"team '{team}' needs tool calls from {', '.join(why)}, which model {conv.model} cannot make: "
                "pick another model",
            )
        tid = await conv.save_to(await self.store(), user, title)
        self._keep_live(tid, conv)
        return conv

    async def open(self, user: str, tid: str) -> Conversation:
        """The conversation `tid` of `user`: the live one, or rebuilt from the store."""
        await self.owned(user, tid)
        async with self._locks.setdefault(tid, asyncio.Lock()):
            conv = self._live.get(tid)
            if conv is None:
                try:
                    conv = await Conversation.resume(await self.store(), tid)
                except ConfigError as exc:
                    raise ApiError(409, f"this conversation cannot continue: {exc}") from exc
            self._keep_live(tid, conv)
            return conv

    def live(self, tid: str) -> Conversation | None:
        return self._live.get(tid)

    def _keep_live(self, tid: str, conv: Conversation) -> None:
        self._live.pop(tid, None)
        self._live[tid] = conv  # most recently used last
        idle = [k for k, c in self._live.items() if not c.running and k != tid]
        for key in idle[: max(0, len(self._live) - self._keep)]:
            closing = self._live.pop(key)
            self._locks.pop(key, None)
            asyncio.get_running_loop().create_task(closing.close(), name=f"parley-api-close-{key}")

    # -- runs ----------------------------------------------------------------------------------------------

    async def say(
        self, conv: Conversation, text: str, mode: str = "say", *, user: str = ""
    ) -> Run | RemoteRun:
        """`user` adds a human message (`say` after the current turn, `interrupt` now); starts a run when idle. In a
        cluster the message goes to the run wherever it is live, or starts one this process or a worker owns."""
        node, tid = await self.node(), conv.thread_id
        try:
            if node is not None and tid is not None and not conv.running:
                if mode == "interrupt" and (run := await self.live_run(user, tid)) is not None:
                    run.interrupt(text, author=user)
                    return run
                now, run = await node.say(conv, text, user)
                if (
                    now is not conv
                ):  # the store had moved on: a copy rebuilt from it holds the conversation now
                    await self._rebuilt(tid, conv, now, owned=isinstance(run, Run))
                return run
            run = conv.current_run
            if conv.running and run is not None and mode == "interrupt":
                run.interrupt(text, author=user)
                return run
            fresh = not conv.running
            run = conv.say(text, author=user)
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from exc
        if fresh:
            self.watch_run(conv, run)
        return run

    async def live_run(self, user: str, tid: str) -> Run | RemoteRun | None:
        """The run in progress of `tid`: this process's, or (in a cluster) the one another process drives."""
        conv = self._live.get(tid)
        if conv is not None and conv.running and conv.current_run is not None:
            return conv.current_run
        node = await self.node()
        if node is None:
            return None
        relay = node.relays.get(tid)
        if relay is not None and relay.conversation.running:
            return relay.conversation.current_run
        if not await node.live_elsewhere(tid):
            await self._drop_copy(tid)
            return None
        remote = await self._watch(node, tid, user)
        return remote if remote.result is None else None

    async def _watch(self, node: Node, tid: str, user: str) -> RemoteRun:
        """A view of the run another process drives in `tid`, made from this hub's one copy of the conversation
        (rebuilt only when the store moved on, and the copy it replaces closed)."""
        async with self._locks.setdefault(tid, asyncio.Lock()):
            copy = self._copies.pop(tid, None)
            if copy is None:
                try:
                    copy = await Conversation.resume(await self.store(), tid)
                except ConfigError as exc:
                    raise ApiError(409, f"this conversation cannot continue: {exc}") from exc
            try:
                remote = await node.watch(copy, user)
            except BaseException:
                await copy.close()
                raise
            if remote.conversation is not copy:
                await copy.close()
            self._copies[tid] = remote.conversation
            for stale in list(self._copies)[: max(0, len(self._copies) - self._keep)]:
                await self._drop_copy(stale)
            return remote

    async def _drop_copy(self, tid: str) -> None:
        copy = self._copies.pop(tid, None)
        if copy is not None:
            await copy.close()

    async def _rebuilt(self, tid: str, old: Conversation, now: Conversation, *, owned: bool) -> None:
        """`node.say` rebuilt `old` from the store as `now`: `old` goes. `now` is kept live if this process runs
        it (`owned`), else it only watched the message go to the process that does."""
        if self._live.get(tid) is old:
            del self._live[tid]
        if owned:
            self._keep_live(tid, now)
        else:
            await now.close()
        if not old.running:
            await old.close()

    def watch_run(self, conv: Conversation, run: Run) -> None:
        """Wake the conversation's event streams after each of `run`'s writes to the store."""
        tid = conv.thread_id
        if tid is None:
            return

        def written(*_: object) -> None:
            self.wake(tid)

        run.on_store_write(written)

    # -- waking streams ------------------------------------------------------------------------------------

    def waker(self, tid: str) -> asyncio.Event:
        """An event set whenever a run of `tid` writes to the store; `forget` it when done."""
        ev = asyncio.Event()
        self._wakers.setdefault(tid, set()).add(ev)
        return ev

    def forget(self, tid: str, ev: asyncio.Event) -> None:
        waiting = self._wakers.get(tid)
        if waiting is not None:
            waiting.discard(ev)
            if not waiting:
                del self._wakers[tid]

    def wake(self, tid: str) -> None:
        for ev in self._wakers.get(tid, ()):
            ev.set()

    async def close(self) -> None:
        """Stop what runs and close every conversation (the server is shutting down)."""
        live, self._live = [*self._live.values(), *self._copies.values()], {}
        self._copies = {}
        await asyncio.gather(*(c.close() for c in live), return_exceptions=True)


def pending(conv: Conversation) -> dict[str, list[dict[str, Any]]]:
    """What the run in progress waits on a human for."""
    run = conv.current_run
    if run is None or not conv.running:
        return {"approvals": [], "questions": [], "escalations": []}
    return {
        "approvals": [e.model_dump(mode="json") for e in run.pending_approvals],
        "questions": [e.model_dump(mode="json") for e in run.pending_questions],
        "escalations": [e.model_dump(mode="json") for e in run.pending_escalations],
    }
