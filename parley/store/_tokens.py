"""API tokens: the table and the SQL behind `Store.create_token`, `tokens_of`, `revoke_token` and `user_of_token`.

A token's secret is `pt_<id>_<random>` (32 random bytes): only its SHA-256 is kept, so a copy of the database
signs nobody in. A request names the token by the id inside the secret, and the hashes are compared in constant
time. Added after the first stores were made: `Store.open` creates the table in an older store.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Index, String, Table, Text, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ._rows import StoreError
from ._schema import UTCDateTime, audit, metadata, users

__all__ = [
    "PREFIX",
    "TokenRow",
    "api_tokens",
    "drop_tokens",
    "new_token",
    "owner_of",
    "token_rows",
    "withdraw",
]

PREFIX = "pt_"
"""Every secret starts so: a secret scanner (or a person) can tell a parley API token at a glance."""
LOCAL_OWNER = "local"
"""The single-user mode's user has no row in `users`; its tokens are made and checked all the same."""
USED_EVERY = timedelta(minutes=1)
"""`last_used_at` is written at most this often per token: a busy client does not make a write of every request."""

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String, nullable=False),
    Column("label", Text, nullable=False, default="", server_default=""),
    Column("secret_hash", String(64), nullable=False),  # SHA-256 hex of the whole secret
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Index(None, "owner"),
)


@dataclass(frozen=True, slots=True)
class TokenRow:
    """An API token as `parley tokens list` shows it (the secret is never kept)."""

    id: str
    owner: str
    label: str
    created_at: datetime
    last_used_at: datetime | None
    """None until a request used it."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _id_of(secret: str) -> str | None:
    """The token id a secret names, or None if it is not of the form parley hands out."""
    if not secret.startswith(PREFIX):
        return None
    tid, sep, rest = secret[len(PREFIX) :].partition("_")
    ok = sep and rest and len(tid) == 12 and all(c in "0123456789abcdef" for c in tid)
    return tid if ok else None


async def new_token(conn: AsyncConnection, owner: str, label: str, at: datetime) -> tuple[str, str]:
    """Make a token for `owner` (a user, or the single-user mode's `local`); returns (id, secret). Audited."""
    if owner != LOCAL_OWNER and await conn.scalar(select(users.c.id).where(users.c.name == owner)) is None:
        raise StoreError(
            f"could not create a token for '{owner}': no such user (`parley users list` shows them)"
        )
    tid = secrets.token_hex(6)
    secret = f"{PREFIX}{tid}_{secrets.token_urlsafe(32)}"
    label = label.replace("\x00", "")
    await conn.execute(
        insert(api_tokens).values(
            id=tid, owner=owner, label=label, secret_hash=_digest(secret), created_at=at
        )
    )
    detail = {"decision": "created", "token": tid, "text": label}
    await conn.execute(
        insert(audit).values(thread_id=None, actor=owner, action="api token", detail=detail, created_at=at)
    )
    return tid, secret


async def token_rows(conn: AsyncConnection, owner: str | None) -> list[TokenRow]:
    """The tokens of `owner` (of everyone when None), oldest first."""
    query = select(
        api_tokens.c.id,
        api_tokens.c.owner,
        api_tokens.c.label,
        api_tokens.c.created_at,
        api_tokens.c.last_used_at,
    ).order_by(api_tokens.c.created_at, api_tokens.c.id)
    if owner is not None:
        query = query.where(api_tokens.c.owner == owner)
    return [TokenRow(*row) for row in await conn.execute(query)]


async def withdraw(conn: AsyncConnection, tid: str, actor: str, at: datetime) -> bool:
    """Delete token `tid` (audited, under the token's owner; `actor` is who did it). False if there is none."""
    owner = await conn.scalar(select(api_tokens.c.owner).where(api_tokens.c.id == tid))
    if owner is None:
        return False
    await conn.execute(delete(api_tokens).where(api_tokens.c.id == tid))
    detail = {"decision": "revoked", "token": tid, "text": f"by {actor}"}
    await conn.execute(
        insert(audit).values(
            thread_id=None, actor=str(owner), action="api token", detail=detail, created_at=at
        )
    )
    return True


async def drop_tokens(conn: AsyncConnection, owner: str) -> None:
    """A removed user's tokens go with them: a user of that name created again does not inherit them."""
    await conn.execute(delete(api_tokens).where(api_tokens.c.owner == owner))


async def owner_of(conn: AsyncConnection, secret: str, at: datetime) -> str | None:
    """The user a token's secret signs in, or None (not a secret of this store, revoked, or its user removed). Notes
    when it was used (at most once every USED_EVERY)."""
    tid = _id_of(secret)
    if tid is None:
        return None
    found = (
        await conn.execute(
            select(api_tokens.c.owner, api_tokens.c.secret_hash, api_tokens.c.last_used_at).where(
                api_tokens.c.id == tid
            )
        )
    ).first()
    if found is None or not hmac.compare_digest(_digest(secret), str(found[1])):
        return None
    owner, last = str(found[0]), found[2]
    if owner != LOCAL_OWNER and await conn.scalar(select(users.c.id).where(users.c.name == owner)) is None:
        return None
    if last is None or at - last >= USED_EVERY:
        await conn.execute(update(api_tokens).where(api_tokens.c.id == tid).values(last_used_at=at))
    return owner
