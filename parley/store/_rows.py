"""What the store hands back, and the one error it raises."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import StoreError

__all__ = ["AuditRow", "CheckpointRow", "EventRow", "FeedbackRow", "StoreError", "ThreadRow", "UserRow"]


@dataclass(frozen=True, slots=True)
class ThreadRow:
    """A conversation."""

    id: str
    owner: str
    team: str
    model: str
    title: str
    created_at: datetime
    updated_at: datetime
    """Last change: creation, rename or the latest event."""


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    """1, 2, 3... per thread, without gaps."""
    type: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """Team state after a turn, and the human messages not yet delivered."""

    turn: int
    state: dict[str, Any]
    pending: list[str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditRow:
    """Who did what, when, and why (`detail`)."""

    id: int
    thread_id: str | None
    actor: str
    action: str
    detail: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UserRow:
    """A web chat user (the password hash never leaves the store)."""

    name: str
    created_at: datetime
    threads: int
    """How many conversations they own."""


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """A person's rating of one message of a conversation: the latest they gave it."""

    id: str
    thread_id: str
    step_id: str
    """The message rated, by the id the web chat gave it."""
    value: int
    """1: thumbs up, 0: thumbs down."""
    comment: str | None
    message: str
    """The rated message's text as the caller gave it ('' when it did not)."""
    actor: str
    created_at: datetime
    updated_at: datetime
