"""Persistence: users, threads, their events and checkpoints, and the audit trail.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) when the URL says so.
"""

from __future__ import annotations

from ._commands import open_for_command, run_owner
from ._rows import AuditRow, CheckpointRow, EventRow, StoreError, ThreadRow
from ._store import Store
from ._urls import default_url

__all__ = ["AuditRow", "CheckpointRow", "EventRow", "Store", "StoreError", "ThreadRow", "default_url",
           "open_for_command", "run_owner"]
