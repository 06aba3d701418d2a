"""Parley beyond one process: several processes (web replicas, workers) sharing PostgreSQL and Redis, each
conversation's run owned by exactly one of them at a time (a lease in the store), its events relayed to every
other process and their commands relayed to it (the bus). Off unless PARLEY_REDIS_URL is set."""

from __future__ import annotations

from ._bus import Bus
from ._commands import Command, Job
from ._lease import Lease, LeaseLost, Leases
from ._node import REDIS_ENV, Node, announce_revoked
from ._relay import Relay
from ._remote import RemoteRun
from ._worker import serve as serve_worker

__all__ = [
    "REDIS_ENV",
    "Bus",
    "Command",
    "Job",
    "Lease",
    "LeaseLost",
    "Leases",
    "Node",
    "Relay",
    "RemoteRun",
    "announce_revoked",
    "serve_worker",
]
