"""Moved to parley.engine.autogen.models.local: these names stay importable from here (loaded on first use) until
every importer takes them from there."""

from __future__ import annotations

from typing import Any

_MOVED = (
    "MODEL_ALIAS",
    "GGUF",
    "LOCAL_INFO",
    "DEFAULT_MAX_TOKENS",
    "CONTEXT",
    "PARALLEL",
    "SLOT_CONTEXT",
    "LocalClient",
    "LocalServerError",
    "base_url",
    "local_client",
    "model_path",
    "local_server",
    "_server",  # bench/embedded.py, until it calls local_server()
)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from ..engine.autogen.models import local

        return getattr(local, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
