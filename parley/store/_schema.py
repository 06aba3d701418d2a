"""The tables. Plain SQLAlchemy Core, portable between SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

__all__ = [
    "THREAD_COLUMNS",
    "audit",
    "checkpoints",
    "events",
    "feedback",
    "logins",
    "metadata",
    "now",
    "threads",
    "users",
]


def now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zones: store naive UTC there and put the zone back on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Named constraints keep future migrations (Alembic) deterministic across backends.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String, nullable=False, unique=True),
    # `scrypt$n$r$p$salt_hex$key_hex`: self-describing, so the cost can rise later.
    Column("password_hash", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=now),
)

# The stamp every login of a user carries (the web chat signs it into the login cookie): `users add`, `passwd` and
# `remove` replace it, so every login made before stops holding. Added after the first stores were made: `Store.open`
# creates it in an older store (create_all adds missing tables). A user without a row has the stamp "", as have the
# logins made before stamps existed: those hold until that user's next change.
logins = Table(
    "logins",
    metadata,
    Column("name", String, primary_key=True),
    Column("stamp", String(64), nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
)

threads = Table(
    "threads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String, nullable=False),
    Column("team", String, nullable=False),
    Column("model", String, nullable=False),
    Column("title", Text, nullable=False),
    # The last event seq handed out; bumping it locks the row, which serialises appends.
    Column("last_seq", Integer, nullable=False, default=0, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "owner", "updated_at"),
)
THREAD_COLUMNS = (
    threads.c.id,
    threads.c.owner,
    threads.c.team,
    threads.c.model,
    threads.c.title,
    threads.c.created_at,
    threads.c.updated_at,
)
"""A thread's columns as a ThreadRow holds them, in its order."""

events = Table(
    "events",
    metadata,
    Column("thread_id", String(64), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", String, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Also the uniqueness guarantee: no two events of a thread share a seq.
    PrimaryKeyConstraint("thread_id", "seq"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("thread_id", String(64), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("turn", Integer, nullable=False),
    Column("state", JSON, nullable=False),
    Column("pending", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "thread_id", "id"),
)

# No foreign key on thread_id: the audit trail outlives the threads it mentions.
audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("thread_id", String(64), nullable=True),
    Column("actor", String, nullable=False),
    Column("action", String, nullable=False),
    Column("detail", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "thread_id", "id"),
)

# A person's rating of one message (thumbs up or down, with an optional comment): the latest per message.
# Added after the first stores were made: `Store.open` creates it in an older store (create_all adds missing
# tables and leaves the others as they are). Every change is also an audit row, so the trail keeps the history.
feedback = Table(
    "feedback",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("thread_id", String(64), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("step_id", String(200), nullable=False),  # the message rated: the id the web chat gave it
    Column("value", Integer, nullable=False),  # 1: thumbs up, 0: thumbs down
    Column("comment", Text, nullable=True),
    # The rated message's text (or its start), when the caller knows it: the export shows what was rated.
    Column("message", Text, nullable=False, default="", server_default=""),
    Column("actor", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("thread_id", "step_id"),
)
