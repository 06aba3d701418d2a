"""The orchestration patterns, as parley sees them (the engine builds its own teams from these)."""

from __future__ import annotations

STEPS = ("ballot", "tally", "verdict")
"""Names of parley's own steps in a consensus team; roles may not use them."""

__all__ = ["STEPS"]
