"""What the commands (`parley run`, `parley eval`, `parley audit`) share about the store."""

from __future__ import annotations

import os

from ..errors import ConfigError
from ._rows import StoreError
from ._store import Store


def run_owner() -> str:
    """Runs started from the command line belong to the web chat's local user (or PARLEY_USER), so
    `parley ui` lists them too."""
    return os.environ.get("PARLEY_USER", "local")


async def open_for_command(hint: str = " (or run with --no-save)") -> Store:
    """The default store, or a ConfigError (exit 2) that says why it cannot be opened."""
    try:
        return await Store.open()
    except StoreError as exc:
        raise ConfigError(f"{exc}{hint}") from None
