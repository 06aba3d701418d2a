"""Persistence: users, threads, their events and checkpoints, and the audit trail.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) when the URL says so.
"""

from __future__ import annotations

from ._commands import open_for_command, run_owner
from ._disk import os_problem, sqlite_file
from ._leases import Lease, LeaseLost
from ._rows import AuditRow, CheckpointRow, EventRow, FeedbackRow, StoreError, ThreadRow, UserRow
from ._shares import MemberRow
from ._store import Store
from ._tokens import TokenRow
from ._urls import default_url, normalise_url, redact

__all__ = [
    "AuditRow",
    "CheckpointRow",
    "EventRow",
    "FeedbackRow",
    "Lease",
    "LeaseLost",
    "MemberRow",
    "Store",
    "StoreError",
    "ThreadRow",
    "TokenRow",
    "UserRow",
    "default_url",
    "normalise_url",
    "open_for_command",
    "os_problem",
    "redact",
    "run_owner",
    "sqlite_file",
]
