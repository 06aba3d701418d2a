"""Moved to parley.engine.autogen.models.shape: these names stay importable from here (loaded on first use) until
every importer takes them from there."""

from __future__ import annotations

from typing import Any

_MOVED = (
    "HUMAN",
    "PROFILES",
    "Profile",
    "hand_back",
    "profile_of",
    "shape",
)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from ..engine.autogen.models import shape

        return getattr(shape, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
