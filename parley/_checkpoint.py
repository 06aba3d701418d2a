"""Moved to parley/engine/autogen/state.py (the AutoGen layer); this name stays until its importers switch."""

from __future__ import annotations

from .engine.autogen.state import Checkpoints

__all__ = ["Checkpoints"]
