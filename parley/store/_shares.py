"""Shared rooms: the table of who else may open a conversation, and the SQL behind `Store.share`, `unshare`,
`members`, `shared_with` and `access`.

The owner shares a conversation with named users, each as 'write' (may also say, interrupt, stop, approve, answer,
resolve) or 'read' (watches). Every grant and revoke is an audit row naming who did it. Access is read from here on
every request, so a revoke holds at once on every replica. Added after the first stores were made: `Store.open`
creates the table in an older store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ._driver import DriverStatement, on_driver
from ._rows import StoreError, ThreadRow
from ._schema import THREAD_COLUMNS, UTCDateTime, audit, metadata, threads, users

__all__ = [
    "Access",
    "MemberRow",
    "Role",
    "access",
    "drop_memberships",
    "grant",
    "member_rows",
    "revoke",
    "shared_rows",
    "thread_members",
]

Role = Literal["read", "write"]
Access = Literal["owner", "write", "read"]

thread_members = Table(
    "thread_members",
    metadata,
    Column("thread_id", String(64), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("user", String, nullable=False),
    Column("role", String(8), nullable=False),  # 'read' | 'write'
    Column("granted_by", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("thread_id", "user"),
    Index(None, "user", "thread_id"),
)


@dataclass(frozen=True, slots=True)
class MemberRow:
    """Someone a conversation is shared with, as `parley share THREAD` lists them."""

    user: str
    role: Role
    """'write': may also say, interrupt, stop and decide; 'read': watches."""
    granted_by: str
    created_at: datetime
    """When this role was given (a change of role gives it again)."""


async def _thread_owner(conn: AsyncConnection, tid: str, doing: str) -> str:
    owner = await conn.scalar(select(threads.c.owner).where(threads.c.id == tid))
    if owner is None:
        raise StoreError(f"could not {doing}: no conversation {tid} (`parley history` lists them)")
    return str(owner)


async def _owner_only(conn: AsyncConnection, tid: str, actor: str, doing: str) -> str:
    owner = await _thread_owner(conn, tid, doing)
    if owner != actor:
        raise StoreError(
            f"could not {doing}: conversation {tid} is {owner}'s, and only its owner shares it "
            f"(you are acting as {actor}; run as its owner with --as {owner} or PARLEY_USER={owner})"
        )
    return owner


async def _audit(
    conn: AsyncConnection, tid: str, actor: str, action: str, member: str, role: str, at: datetime
) -> None:
    detail = {"decision": action, "member": member, "role": role, "text": f"{action} {member} by {actor}"}
    await conn.execute(
        insert(audit).values(thread_id=tid, actor=actor, action=action, detail=detail, created_at=at)
    )


async def grant(conn: AsyncConnection, tid: str, member: str, role: Role, actor: str, at: datetime) -> bool:
    """Share conversation `tid` with user `member` as `role`, or change their role; `actor` must own it. Audited
    ('share'). True if the member is new, False if their role was replaced. StoreError, in words, otherwise."""
    doing = f"share conversation {tid} with '{member}'"
    if role not in ("read", "write"):
        raise StoreError(f"could not {doing}: the role is 'read' or 'write', not {role!r}")
    if await conn.scalar(select(users.c.id).limit(1)) is None:
        raise StoreError(
            f"could not {doing}: this store has no users (the single-user mode). Create the users first with "
            "`parley users add NAME`, then share with them"
        )
    owner = await _owner_only(conn, tid, actor, doing)
    if member == owner:
        raise StoreError(f"could not {doing}: '{member}' owns it already")
    if await conn.scalar(select(users.c.id).where(users.c.name == member)) is None:
        raise StoreError(f"could not {doing}: no such user (`parley users list` shows them)")
    changed = await conn.execute(
        update(thread_members)
        .where(thread_members.c.thread_id == tid, thread_members.c.user == member)
        .values(role=role, granted_by=actor, created_at=at)
    )
    if changed.rowcount == 0:
        await conn.execute(
            insert(thread_members).values(
                thread_id=tid, user=member, role=role, granted_by=actor, created_at=at
            )
        )
    await _audit(conn, tid, actor, "share", member, role, at)
    return changed.rowcount == 0


async def revoke(conn: AsyncConnection, tid: str, member: str, actor: str, at: datetime) -> bool:
    """End `member`'s access to `tid` (`actor` must own it). Audited ('revoke'). False if it was not shared with
    them."""
    await _owner_only(conn, tid, actor, f"stop sharing conversation {tid} with '{member}'")
    role = await conn.scalar(
        select(thread_members.c.role).where(
            thread_members.c.thread_id == tid, thread_members.c.user == member
        )
    )
    if role is None:
        return False
    await conn.execute(
        delete(thread_members).where(thread_members.c.thread_id == tid, thread_members.c.user == member)
    )
    await _audit(conn, tid, actor, "revoke", member, str(role), at)
    return True


async def drop_memberships(conn: AsyncConnection, user: str) -> None:
    """A removed user's places in others' conversations go with them: a user of that name created again does not
    inherit them."""
    await conn.execute(delete(thread_members).where(thread_members.c.user == user))


async def member_rows(conn: AsyncConnection, tid: str) -> list[MemberRow]:
    """Who conversation `tid` is shared with, in the order they were given their role."""
    query = (
        select(
            thread_members.c.user,
            thread_members.c.role,
            thread_members.c.granted_by,
            thread_members.c.created_at,
        )
        .where(thread_members.c.thread_id == tid)
        .order_by(thread_members.c.created_at, thread_members.c.user)
    )
    return [
        MemberRow(str(u), "write" if r == "write" else "read", str(g), c)
        for u, r, g, c in await conn.execute(query)
    ]


async def shared_rows(conn: AsyncConnection, user: str, limit: int = 50) -> list[tuple[ThreadRow, Role]]:
    """The conversations others shared with `user`, most recently updated first, each with `user`'s role."""
    query = (
        select(*THREAD_COLUMNS, thread_members.c.role)
        .join(thread_members, thread_members.c.thread_id == threads.c.id)
        .where(thread_members.c.user == user, threads.c.owner != user)
        .order_by(threads.c.updated_at.desc(), threads.c.created_at.desc(), threads.c.id)
        .limit(limit)
    )
    return [
        (ThreadRow(*row[:-1]), "write" if row[-1] == "write" else "read") for row in await conn.execute(query)
    ]


_ACCESS = DriverStatement(
    "SELECT threads.owner, thread_members.role FROM threads LEFT OUTER JOIN thread_members"
    ' ON thread_members.thread_id = threads.id AND thread_members."user" = CAST(:user AS varchar)'
    " WHERE threads.id = CAST(:tid AS varchar)"
)
"""`access` on PostgreSQL: the same query, on the driver (see _driver.py)."""


async def access(conn: AsyncConnection, user: str, tid: str) -> Access | None:
    """What `user` may do with conversation `tid`: 'owner', 'write', 'read', or None (not theirs, or no such
    conversation). One query: asked on every request and socket event."""
    if on_driver(conn):
        row: Any = await _ACCESS.row(conn, {"user": user, "tid": tid})
    else:
        query = (
            select(threads.c.owner, thread_members.c.role)
            .select_from(threads)
            .outerjoin(
                thread_members, (thread_members.c.thread_id == threads.c.id) & (thread_members.c.user == user)
            )
            .where(threads.c.id == tid)
        )
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    if row[0] == user:
        return "owner"
    if row[1] == "write":
        return "write"
    return "read" if row[1] == "read" else None
