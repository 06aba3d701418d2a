"""The SQL behind the store's users and feedback, one function per change, each inside the caller's transaction."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ._driver import DriverStatement, on_driver
from ._passwords import MIN_PASSWORD
from ._rows import FeedbackRow, StoreError, UserRow
from ._schema import audit, feedback, logins, threads, users

__all__ = [
    "RATINGS",
    "RESERVED_USER",
    "check_name",
    "check_password",
    "count_threads",
    "drop_feedback",
    "drop_user",
    "feedback_rows",
    "hand_over",
    "login_stamp",
    "new_password",
    "new_stamp",
    "rate",
    "user_count",
    "user_rows",
]

RESERVED_USER = "local"
"""The web chat's single-user mode signs everyone in as this user; `parley run` saves its runs under it."""
RATINGS = {1: "thumbs up", 0: "thumbs down"}
MESSAGE_KEPT = 2000
"""How much of a rated message's text the feedback keeps."""


def check_name(name: str) -> None:
    """StoreError unless `name` can be a user's name."""
    if not name.strip():
        raise StoreError("could not create user: the name is empty")
    if name.strip().lower() == RESERVED_USER:
        # The single-user mode's user owns every conversation made before logins and by `parley run`:
        # a password user of that name would sign in as all of them.
        raise StoreError(
            f"could not create user '{name}': '{RESERVED_USER}' is the name of the local "
            "single-user mode's user; pick another name"
        )
    if any(not c.isprintable() for c in name) or name != name.strip():
        raise StoreError(
            f"could not create user {name!r}: a name has no control characters and no spaces at its ends"
        )


def check_password(name: str, password: str, doing: str = "create user") -> None:
    if len(password) < MIN_PASSWORD:
        raise StoreError(f"could not {doing} '{name}': the password needs at least {MIN_PASSWORD} characters")


async def user_rows(conn: AsyncConnection) -> list[UserRow]:
    """Every user with how many conversations they own, oldest first."""
    owned = select(threads.c.owner, func.count().label("n")).group_by(threads.c.owner).subquery("owned")
    query = (
        select(users.c.name, users.c.created_at, func.coalesce(owned.c.n, 0))
        .select_from(users.outerjoin(owned, owned.c.owner == users.c.name))
        .order_by(users.c.created_at, users.c.id)
    )
    return [UserRow(name, at, int(n)) for name, at, n in await conn.execute(query)]


async def count_threads(conn: AsyncConnection, owner: str) -> int:
    return int(await conn.scalar(select(func.count()).where(threads.c.owner == owner)) or 0)


async def drop_user(conn: AsyncConnection, name: str) -> None:
    """Delete the user and their login stamp: every login they hold stops, also once the name is created again."""
    result = await conn.execute(delete(users).where(users.c.name == name))
    if result.rowcount == 0:
        raise StoreError(f"could not remove user '{name}': no such user (`parley users list` shows them)")
    await conn.execute(delete(logins).where(logins.c.name == name))


async def new_stamp(conn: AsyncConnection, name: str, at: datetime) -> str:
    """Give `name` a login stamp no login made before carries; returns it."""
    stamp = secrets.token_hex(16)
    # Update first: on PostgreSQL it locks an existing row, so two changes at once queue rather than collide.
    changed = await conn.execute(
        update(logins).where(logins.c.name == name).values(stamp=stamp, changed_at=at)
    )
    if changed.rowcount == 0:
        await conn.execute(insert(logins).values(name=name, stamp=stamp, changed_at=at))
    return stamp


_LOGIN_STAMP = DriverStatement(
    "SELECT users.password_hash, coalesce(logins.stamp, '') FROM users"
    " LEFT OUTER JOIN logins ON logins.name = users.name WHERE users.name = CAST(:name AS varchar)"
)
_USER_COUNT = DriverStatement("SELECT count(*) FROM users")
"""On PostgreSQL, on the driver (see _driver.py): the web chat asks both at every socket event it screens."""


async def login_stamp(conn: AsyncConnection, name: str) -> tuple[str, str] | None:
    """(password hash, login stamp) of user `name`, or None if there is none. A user made before stamps existed
    has the stamp ""."""
    if on_driver(conn):
        row: Any = await _LOGIN_STAMP.row(conn, {"name": name})
    else:
        query = (
            select(users.c.password_hash, func.coalesce(logins.c.stamp, ""))
            .select_from(users.outerjoin(logins, logins.c.name == users.c.name))
            .where(users.c.name == name)
        )
        row = (await conn.execute(query)).first()
    return (str(row[0]), str(row[1])) if row is not None else None


async def user_count(conn: AsyncConnection) -> int:
    if on_driver(conn):
        row = await _USER_COUNT.row(conn, {})
        return 0 if row is None else int(row[0])
    return int(await conn.scalar(select(func.count()).select_from(users)) or 0)


async def new_password(conn: AsyncConnection, name: str, hashed: str) -> None:
    result = await conn.execute(update(users).where(users.c.name == name).values(password_hash=hashed))
    if result.rowcount == 0:
        raise StoreError(
            f"could not change the password of '{name}': no such user (`parley users list` shows them)"
        )


async def hand_over(conn: AsyncConnection, giver: str, taker: str, actor: str, at: datetime) -> int:
    """Give every conversation of `giver` to `taker`; an audit row says so. Returns how many moved."""
    if await conn.scalar(select(func.count()).where(users.c.name == taker)) == 0:
        raise StoreError(f"could not hand conversations to '{taker}': no such user")
    moved = (await conn.execute(update(threads).where(threads.c.owner == giver).values(owner=taker))).rowcount
    if moved:
        detail = {"decision": f"{moved} conversations", "from": giver, "to": taker}
        await conn.execute(
            insert(audit).values(
                thread_id=None, actor=actor, action="conversations handed over", detail=detail, created_at=at
            )
        )
    return int(moved)


async def rate(
    conn: AsyncConnection,
    key: tuple[str, str],
    value: int,
    comment: str | None,
    *,
    actor: str,
    message: str,
    at: datetime,
) -> str:
    """Keep `actor`'s rating of message `key` = (thread id, step id), replacing an earlier one; audit it."""
    tid, step_id = key
    if value not in RATINGS:
        raise StoreError(
            f"could not keep feedback on {step_id}: the rating is 1 (thumbs up) or 0 (thumbs down)"
        )
    owner = await conn.scalar(select(threads.c.owner).where(threads.c.id == tid))
    if owner is None:
        raise StoreError(f"could not keep feedback on thread {tid}: no such thread")
    if owner != actor:
        raise StoreError(f"could not keep feedback on thread {tid}: the conversation is not {actor}'s")
    comment = comment.replace("\x00", "") if comment else None
    message = message.replace("\x00", "")[:MESSAGE_KEPT]
    row = select(feedback.c.id).where(feedback.c.thread_id == tid, feedback.c.step_id == step_id)
    fid = await conn.scalar(row)
    values = {"value": value, "comment": comment, "actor": actor, "updated_at": at}
    if message:
        values["message"] = message
    if fid is None:
        fid = uuid.uuid4().hex
        await conn.execute(
            insert(feedback).values(id=fid, thread_id=tid, step_id=step_id, created_at=at, **values)
        )
    else:
        await conn.execute(update(feedback).where(feedback.c.id == fid).values(**values))
    detail = {"decision": RATINGS[value], "step": step_id, "text": comment or "", "message": message}
    await conn.execute(
        insert(audit).values(thread_id=tid, actor=actor, action="feedback", detail=detail, created_at=at)
    )
    return str(fid)


async def drop_feedback(conn: AsyncConnection, fid: str, *, actor: str, at: datetime) -> bool:
    """Take back a rating (only its giver can); audited. False if there is none of that id."""
    found = (
        await conn.execute(
            select(feedback.c.thread_id, feedback.c.step_id, feedback.c.actor).where(feedback.c.id == fid)
        )
    ).first()
    if found is None:
        return False
    tid, step_id, giver = found
    if giver != actor:
        raise StoreError(f"could not remove feedback {fid}: it is not {actor}'s")
    await conn.execute(delete(feedback).where(feedback.c.id == fid))
    detail = {"decision": "removed", "step": step_id}
    await conn.execute(
        insert(audit).values(thread_id=tid, actor=actor, action="feedback", detail=detail, created_at=at)
    )
    return True


async def feedback_rows(conn: AsyncConnection, tid: str) -> list[FeedbackRow]:
    query = (
        select(
            feedback.c.id,
            feedback.c.thread_id,
            feedback.c.step_id,
            feedback.c.value,
            feedback.c.comment,
            feedback.c.message,
            feedback.c.actor,
            feedback.c.created_at,
            feedback.c.updated_at,
        )
        .where(feedback.c.thread_id == tid)
        .order_by(feedback.c.created_at, feedback.c.id)
    )
    return [FeedbackRow(*row) for row in await conn.execute(query)]
