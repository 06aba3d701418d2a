"""The store: users, threads with their events and checkpoints, and the audit trail."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..events import Event, decode_events
from ._accounts import (
    check_name,
    check_password,
    count_threads,
    drop_feedback,
    drop_user,
    feedback_rows,
    hand_over,
    login_stamp,
    new_password,
    new_stamp,
    rate,
    user_count,
    user_rows,
)
from ._append import Batch, batch_what, write_batch
from ._append_pg import write_batch_at_once
from ._batch import BatchWriter, NoSuchThread
from ._connect import OPEN_TIMEOUT_S, connect
from ._disk import sqlite_file, storage_problem
from ._driver import NEW_THREAD, THREAD_BY_ID, Integrity, thread_row
from ._engine import SQLITE_BUSY_TIMEOUT_S, error_text
from ._history import checkpoint_row, event_rows
from ._lane import Lane
from ._leases import Lease, live_holder, orphans, release, renew, renew_many, take
from ._passwords import hash_password, verify_password
from ._rows import AuditRow, CheckpointRow, EventRow, FeedbackRow, StoreError, ThreadRow, UserRow
from ._schema import THREAD_COLUMNS, audit, checkpoints, events, feedback, now, threads, users
from ._shares import (
    Access,
    MemberRow,
    Role,
    access,
    drop_memberships,
    grant,
    member_rows,
    revoke,
    shared_rows,
)
from ._tokens import TokenRow, drop_tokens, new_token, owner_of, token_rows, withdraw

__all__ = ["Store"]


class Store:
    """Persistence for parley. Make one with `await Store.open(url)`; every method is a transaction."""

    def __init__(self, engine: AsyncEngine, shown_url: str) -> None:
        self._engine = engine
        self._autocommit = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else None
        )
        """PostgreSQL's connections outside a transaction. Reads run so: under READ COMMITTED each statement takes a
        snapshot of its own anyway, and a read then costs one round trip instead of three (BEGIN, the query,
        ROLLBACK). So do a run's batches, each written in one statement (see _append_pg.py)."""
        self._lane = Lane(self._autocommit) if self._autocommit is not None else None
        """PostgreSQL: connections outside a transaction, kept between statements while in steady use."""
        self.url = shown_url
        """The database URL, password masked."""
        self._file = sqlite_file(engine.url)
        """The SQLite database file, when the store is one: its disk's failures are told in words."""
        sqlite = engine.dialect.name == "sqlite"
        memory = sqlite and engine.url.database in (None, "", ":memory:")
        # SQLite has one writer at a time: queue this process's writers here rather than in
        # SQLite's busy-wait polling. In-memory SQLite is a single shared connection, which
        # can carry only one transaction at a time, so there reads queue too.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if sqlite else None
        self._read_lock = self._write_lock if memory else None
        self._batches = (
            BatchWriter(self._file, engine.dialect, SQLITE_BUSY_TIMEOUT_S)
            if sqlite and not memory and self._file is not None
            else None
        )
        """A SQLite file's run batches go through a connection and thread of their own (see _batch.py)."""

    @classmethod
    async def open(cls, url: str | None = None, *, timeout_s: float = OPEN_TIMEOUT_S) -> Store:
        """Connect to `url` (default: `default_url()`) and create any missing tables."""
        return cls(*await connect(url, timeout_s))

    async def close(self) -> None:
        if self._batches is not None:
            await self._batches.close()
        if self._lane is not None:
            await self._lane.close()
        await self._engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def dialect(self) -> str:
        """The database's kind: "postgresql" or "sqlite"."""
        return self._engine.dialect.name

    # -- plumbing ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _write(self, what: str) -> AsyncIterator[AsyncConnection]:
        """One transaction: commits if the body finishes, rolls back if anything fails."""
        try:
            async with self._write_lock or contextlib.nullcontext(), self._engine.begin() as conn:
                yield conn
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(self._problem(exc) or f"could not {what}: {error_text(exc)}") from exc

    def _problem(self, exc: BaseException) -> str | None:
        """A full disk or a read-only folder under the SQLite file, in one line that says what to do."""
        return storage_problem(self._file, exc) if self._file is not None else None

    def _statement(self, what: str) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write of one statement: outside a transaction on PostgreSQL (it runs on the driver, atomic on its own),
        in one elsewhere."""
        return self._read(what) if self._autocommit is not None else self._write(what)

    @contextlib.asynccontextmanager
    async def _read(self, what: str) -> AsyncIterator[AsyncConnection]:
        try:
            async with (
                self._read_lock or contextlib.nullcontext(),
                self._lane.connection() if self._lane is not None else self._engine.connect() as conn,
            ):
                yield conn
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(self._problem(exc) or f"could not {what}: {error_text(exc)}") from exc

    # -- users ---------------------------------------------------------------------------

    async def create_user(self, name: str, password: str) -> None:
        """Add a user. The password is stored only as a salted scrypt hash."""
        check_name(name)
        check_password(name, password)
        hashed = await asyncio.to_thread(hash_password, password)  # ~50 ms of CPU: keep the loop free
        async with self._write(f"create user '{name}'") as conn:
            try:
                await conn.execute(insert(users).values(name=name, password_hash=hashed, created_at=now()))
            except IntegrityError as exc:
                raise StoreError(f"could not create user '{name}': the name is taken") from exc
            await new_stamp(conn, name, now())  # a login of a removed user of that name stays ended

    async def list_users(self) -> list[UserRow]:
        """Every user, oldest first, with how many conversations each owns."""
        async with self._read("list the users") as conn:
            return await user_rows(conn)

    async def remove_user(self, name: str) -> int:
        """Delete a user (StoreError if there is none) and end their logins; their conversations stay. Returns how
        many they own."""
        async with self._write(f"remove user '{name}'") as conn:
            await drop_user(conn, name)
            await drop_tokens(conn, name)
            await drop_memberships(conn, name)  # a user of that name created again does not inherit them
            return await count_threads(conn, name)

    async def set_password(self, name: str, password: str) -> None:
        """Replace a user's password and end every login they hold (StoreError if there is no such user or the
        password is too short)."""
        check_password(name, password, "change the password of")
        hashed = await asyncio.to_thread(hash_password, password)
        async with self._write(f"change the password of '{name}'") as conn:
            await new_password(conn, name, hashed)
            await new_stamp(conn, name, now())

    async def hand_over_threads(self, giver: str, taker: str, *, actor: str) -> int:
        """Give every conversation of `giver` (e.g. the single-user mode's `local`) to user `taker`, with an
        audit row; returns how many moved."""
        async with self._write(f"hand the conversations of '{giver}' to '{taker}'") as conn:
            return await hand_over(conn, giver, taker, actor, now())

    async def count_threads(self, owner: str) -> int:
        async with self._read(f"count the threads of '{owner}'") as conn:
            return await count_threads(conn, owner)

    async def verify_user(self, name: str, password: str) -> bool:
        async with self._read(f"look up user '{name}'") as conn:
            stored = await conn.scalar(select(users.c.password_hash).where(users.c.name == name))
        return await asyncio.to_thread(verify_password, password, stored)

    async def sign_in(self, name: str, password: str) -> str | None:
        """The login stamp to give a sign-in of `name` with `password` (see `login_stamp`), or None if the password is
        wrong or there is no such user. Password and stamp are read together: a sign-in with the password `passwd`
        just replaced never gets the stamp that came with the new one."""
        async with self._read(f"look up user '{name}'") as conn:
            found = await login_stamp(conn, name)
        ok = await asyncio.to_thread(verify_password, password, found[0] if found else None)
        return found[1] if ok and found else None

    async def login_stamp(self, name: str) -> str | None:
        """The stamp a login of user `name` must carry to hold, or None if there is no such user. `create_user`,
        `set_password` and `remove_user` replace it, so the logins made before stop holding."""
        async with self._read(f"look up user '{name}'") as conn:
            found = await login_stamp(conn, name)
        return found[1] if found else None

    async def user_exists(self, name: str) -> bool:
        async with self._read(f"look up user '{name}'") as conn:
            return await conn.scalar(select(users.c.id).where(users.c.name == name)) is not None

    async def count_users(self) -> int:
        async with self._read("count users") as conn:
            return await user_count(conn)

    # -- threads -------------------------------------------------------------------------

    async def create_thread(
        self, owner: str, team: str, model: str, title: str, *, thread_id: str | None = None
    ) -> str:
        """A new conversation; returns its id (32 hex digits unless `thread_id` names it, e.g. the web chat's)."""
        tid = thread_id or uuid.uuid4().hex
        title = title.replace("\x00", "")  # PostgreSQL text cannot hold NUL
        at = now()
        values = {"id": tid, "owner": owner, "team": team, "model": model, "title": title}
        async with self._statement(f"create a thread for '{owner}'") as conn:
            try:
                # PostgreSQL: one statement on the driver, outside a transaction (atomic on its own)
                if self._autocommit is not None:
                    await NEW_THREAD.rows(conn, {**values, "at": at})
                else:
                    await conn.execute(insert(threads).values(**values, created_at=at, updated_at=at))
            except (IntegrityError, Integrity) as exc:  # the only constraint: the id
                raise StoreError(
                    f"could not create a thread for '{owner}': thread {tid} exists already"
                ) from exc
        return tid

    async def list_threads(self, owner: str, limit: int = 50) -> list[ThreadRow]:
        """`owner`'s threads, most recently updated first."""
        query = (
            select(*THREAD_COLUMNS)
            .where(threads.c.owner == owner)
            .order_by(threads.c.updated_at.desc(), threads.c.created_at.desc(), threads.c.id)
            .limit(limit)
        )
        async with self._read(f"list the threads of '{owner}'") as conn:
            return [ThreadRow(*row) for row in await conn.execute(query)]

    async def get_thread(self, tid: str) -> ThreadRow | None:
        async with self._read(f"read thread {tid}") as conn:
            if self._autocommit is not None:  # PostgreSQL: the most frequent read, on the driver itself
                return thread_row(await THREAD_BY_ID.row(conn, {"tid": tid}))
            row = (await conn.execute(select(*THREAD_COLUMNS).where(threads.c.id == tid))).first()
        return ThreadRow(*row) if row else None

    async def rename_thread(self, tid: str, title: str) -> None:
        """Set the title (and `updated_at`). StoreError if there is no such thread."""
        title = title.replace("\x00", "")
        async with self._statement(f"rename thread {tid}") as conn:
            result = await conn.execute(
                update(threads).where(threads.c.id == tid).values(title=title, updated_at=now())
            )
            if result.rowcount == 0:
                raise StoreError(f"could not rename thread {tid}: no such thread")

    async def delete_thread(self, tid: str) -> None:
        """Delete a thread with its events and checkpoints; its audit rows stay."""
        async with self._write(f"delete thread {tid}") as conn:
            await conn.execute(delete(events).where(events.c.thread_id == tid))
            await conn.execute(delete(checkpoints).where(checkpoints.c.thread_id == tid))
            await conn.execute(delete(feedback).where(feedback.c.thread_id == tid))
            result = await conn.execute(delete(threads).where(threads.c.id == tid))
            if result.rowcount == 0:
                raise StoreError(f"could not delete thread {tid}: no such thread")

    # -- events --------------------------------------------------------------------------

    async def append_event(self, tid: str, event_type: str, payload: Mapping[str, Any]) -> int:
        """Append an event; returns its seq (1, 2, 3... per thread, no gaps)."""
        [seq] = await self.append_batch(tid, [(event_type, payload)])
        return seq

    async def append_batch(
        self,
        tid: str,
        new_events: Sequence[tuple[str, Mapping[str, Any]]],
        audits: Sequence[tuple[str, str, Mapping[str, Any]]] = (),
        checkpoint: tuple[int, Mapping[str, Any], Sequence[str]] | None = None,
        *,
        fence: Lease | None = None,
    ) -> list[int]:
        """Events (consecutive seqs), audit rows and a checkpoint of one thread in one transaction: all or
        nothing. Returns the events' seqs. A run writes what piled up while its writer was busy this way. With
        `fence`, LeaseLost (and nothing written) once that lease no longer holds the thread."""
        if not new_events and not audits and checkpoint is None:
            return []
        batch: Batch = (new_events, audits, checkpoint)
        what = batch_what(tid, batch)
        if self._batches is not None and fence is None:
            return await self._sqlite_batch(what, tid, new_events, audits, checkpoint)
        if self._autocommit is not None:
            async with self._read(what) as conn:  # one statement, outside a transaction: it is one
                return await write_batch_at_once(conn, tid, batch, now(), what, fence)
        async with self._write(what) as conn:
            return await write_batch(conn, tid, batch, now(), what, fence)

    async def _sqlite_batch(
        self,
        what: str,
        tid: str,
        new_events: Sequence[tuple[str, Mapping[str, Any]]],
        audits: Sequence[tuple[str, str, Mapping[str, Any]]],
        checkpoint: tuple[int, Mapping[str, Any], Sequence[str]] | None,
    ) -> list[int]:
        assert self._batches is not None
        try:
            async with self._write_lock or contextlib.nullcontext():
                return await self._batches.write(tid, new_events, audits, checkpoint, now())
        except NoSuchThread as exc:
            raise StoreError(f"could not {what}: no such thread") from exc
        except Exception as exc:
            raise StoreError(self._problem(exc) or f"could not {what}: {error_text(exc)}") from exc

    async def events(self, tid: str, after_seq: int = 0) -> list[EventRow]:
        """The thread's events with seq > `after_seq`, in order."""
        async with self._read(f"read the events of thread {tid}") as conn:
            return await event_rows(conn, tid, after_seq)

    async def load_events(self, tid: str, after_seq: int = 0) -> list[Event]:
        """The thread's events with seq > `after_seq`, decoded, in order. A kind of event this version cannot read
        (one from a newer version) is left out: what is understood still shows."""
        return decode_events(row.payload for row in await self.events(tid, after_seq))

    # -- checkpoints ---------------------------------------------------------------------

    async def save_checkpoint(
        self, tid: str, turn: int, state: Mapping[str, Any], pending: Sequence[str]
    ) -> None:
        """Keep the team's `save_state()` after `turn`, with the undelivered human messages."""
        await self.append_batch(tid, (), (), (turn, state, pending))

    async def latest_checkpoint(self, tid: str, *, up_to_turn: int | None = None) -> CheckpointRow | None:
        """The checkpoint saved last (of a turn up to `up_to_turn`, when given), or None."""
        async with self._read(f"read the latest checkpoint of thread {tid}") as conn:
            return await checkpoint_row(conn, tid, up_to_turn)

    # -- run leases (see _leases.py) ----------------------------------------------------

    async def take_lease(self, tid: str, holder: str, ttl_s: float, *, run_open: bool = True) -> Lease | None:
        """`tid`'s lease for `holder` for `ttl_s` seconds (the same fence if it was already theirs, a larger one
        otherwise), or None while another holder's is live."""
        async with self._statement(f"take the lease of thread {tid}") as conn:
            fence = await take(conn, tid, holder, ttl_s, run_open=run_open)
        return None if fence is None else Lease(tid, holder, fence)

    async def renew_lease(self, lease: Lease, ttl_s: float) -> bool:
        """Extend `lease` by `ttl_s` seconds from now; False if it was taken over or released."""
        async with self._statement(f"renew the lease of thread {lease.thread_id}") as conn:
            return await renew(conn, lease, ttl_s)

    async def renew_leases(self, leases: Sequence[Lease], ttl_s: float) -> set[tuple[str, int]]:
        """`renew_lease` for several leases at once: (thread, fence) of each one renewed (the others were lost)."""
        async with self._statement(f"renew {len(leases)} leases") as conn:
            return await renew_many(conn, leases, ttl_s)

    async def release_lease(self, lease: Lease, *, run_open: bool = False) -> None:
        """Give `lease` up; `run_open`: its run is not over and another process should carry it on."""
        async with self._statement(f"release the lease of thread {lease.thread_id}") as conn:
            await release(conn, lease, run_open=run_open)

    async def lease_holder(self, tid: str) -> str | None:
        """The holder of `tid`'s live lease, if any."""
        async with self._read(f"read the lease of thread {tid}") as conn:
            return await live_holder(conn, tid)

    async def orphaned_runs(self) -> list[str]:
        """Threads whose run is open while nobody holds its lease: a process died (or stopped) mid-run."""
        async with self._read("list the runs nobody holds") as conn:
            return await orphans(conn)

    # -- feedback ------------------------------------------------------------------------

    async def upsert_feedback(
        self,
        thread_id: str,
        step_id: str,
        value: int,
        *,
        actor: str,
        comment: str | None = None,
        message: str = "",
    ) -> str:
        """Keep `actor`'s rating of message `step_id` (1 thumbs up, 0 thumbs down), replacing their earlier one, and
        record it in the audit trail; returns the feedback's id. StoreError if the thread is not `actor`'s."""
        async with self._write(f"keep feedback on a message of thread {thread_id}") as conn:
            return await rate(
                conn, (thread_id, step_id), value, comment, actor=actor, message=message, at=now()
            )

    async def delete_feedback(self, feedback_id: str, *, actor: str) -> bool:
        """Take back a rating (audited); False if there is none of that id, StoreError if it is not `actor`'s."""
        async with self._write(f"remove feedback {feedback_id}") as conn:
            return await drop_feedback(conn, feedback_id, actor=actor, at=now())

    async def feedback_of(self, thread_id: str) -> list[FeedbackRow]:
        """The ratings of a thread's messages, oldest first."""
        async with self._read(f"read the feedback of thread {thread_id}") as conn:
            return await feedback_rows(conn, thread_id)

    # -- API tokens ----------------------------------------------------------------------

    async def create_token(self, owner: str, label: str = "") -> tuple[str, str]:
        """A new API token for `owner` (a user, or the single-user mode's `local`): (its id, its secret). Only a
        SHA-256 of the secret is kept: show the secret now, it cannot be read again. Audited."""
        async with self._write(f"create an API token for '{owner}'") as conn:
            return await new_token(conn, owner, label, now())

    async def tokens_of(self, owner: str | None = None) -> list[TokenRow]:
        """The API tokens of `owner` (everyone's when None), oldest first, with their labels and last use."""
        async with self._read("list the API tokens") as conn:
            return await token_rows(conn, owner)

    async def revoke_token(self, token_id: str, *, actor: str = "admin") -> bool:
        """Delete API token `token_id` (audited); False if there is none."""
        async with self._write(f"revoke API token {token_id}") as conn:
            return await withdraw(conn, token_id, actor, now())

    async def user_of_token(self, secret: str) -> str | None:
        """The user an API token's secret signs in, or None (unknown, revoked, or its user removed)."""
        async with self._write("check an API token") as conn:
            return await owner_of(conn, secret, now())

    # -- shared rooms --------------------------------------------------------------------

    async def share(self, tid: str, member: str, role: Role = "write", *, actor: str) -> bool:
        """Share conversation `tid` with user `member` as 'write' or 'read' (or change their role); `actor` must own
        it. Audited. True if `member` is new to it. StoreError in words (no users yet, not the owner, no such user)."""
        async with self._write(f"share conversation {tid} with '{member}'") as conn:
            return await grant(conn, tid, member, role, actor, now())

    async def unshare(self, tid: str, member: str, *, actor: str) -> bool:
        """End `member`'s access to `tid` at once (`actor` must own it). Audited. False if it was not shared."""
        async with self._write(f"stop sharing conversation {tid} with '{member}'") as conn:
            return await revoke(conn, tid, member, actor, now())

    async def members(self, tid: str) -> list[MemberRow]:
        """Who conversation `tid` is shared with, and as what."""
        async with self._read(f"read the members of conversation {tid}") as conn:
            return await member_rows(conn, tid)

    async def shared_with(self, user: str, limit: int = 50) -> list[tuple[ThreadRow, Role]]:
        """The conversations others shared with `user`, most recently updated first, with `user`'s role."""
        async with self._read(f"list the conversations shared with '{user}'") as conn:
            return await shared_rows(conn, user, limit)

    async def access(self, user: str, tid: str) -> Access | None:
        """What `user` may do with `tid`: 'owner', 'write', 'read', or None (not theirs, or no such thread)."""
        async with self._read(f"check the access of '{user}' to conversation {tid}") as conn:
            return await access(conn, user, tid)

    # -- audit ---------------------------------------------------------------------------

    async def audit(self, tid: str | None, actor: str, action: str, detail: Mapping[str, Any]) -> None:
        """Record who (`actor`) did what (`action`) and why (`detail`). Append-only."""
        async with self._write(f"record '{action}' by '{actor}' in the audit trail") as conn:
            await conn.execute(
                insert(audit).values(
                    thread_id=tid, actor=actor, action=action, detail=dict(detail), created_at=now()
                )
            )

    async def audit_log(self, tid: str | None = None) -> list[AuditRow]:
        """Audit rows oldest first: of thread `tid`, or of everything when None."""
        query = select(
            audit.c.id, audit.c.thread_id, audit.c.actor, audit.c.action, audit.c.detail, audit.c.created_at
        ).order_by(audit.c.id)
        if tid is not None:
            query = query.where(audit.c.thread_id == tid)
        async with self._read("read the audit trail") as conn:
            return [AuditRow(*row) for row in await conn.execute(query)]
