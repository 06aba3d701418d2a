"""Moved to parley.engine.autogen.models.replay: these names stay importable from here (loaded on first use) until
every importer takes them from there."""

from __future__ import annotations

from typing import Any

_MOVED = (
    "ReplayServer",
    "replay_client",
    "replay_server",
)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from ..engine.autogen.models import replay

        return getattr(replay, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
