"""Prices per million tokens. Unknown models show tokens, never a made-up cost.

Extend or override with a YAML or JSON file named by `PARLEY_PRICES`:
`{"openai:my-finetune": {"prompt": 0.3, "completion": 1.2}}` (USD per million tokens).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import yaml

from ..errors import ConfigError

# USD per 1M tokens (prompt, completion), list prices.
_BUILTIN: dict[str, tuple[float, float]] = {
    "local": (0.0, 0.0),
    "openai:gpt-4o": (2.50, 10.00),
    "openai:gpt-4o-mini": (0.15, 0.60),
    "openai:gpt-4.1": (2.00, 8.00),
    "openai:gpt-4.1-mini": (0.40, 1.60),
    "openai:gpt-4.1-nano": (0.10, 0.40),
    "openai:o3-mini": (1.10, 4.40),
    "openai:o4-mini": (1.10, 4.40),
    "anthropic:claude-3-5-haiku-latest": (0.80, 4.00),
    "anthropic:claude-3-5-sonnet-latest": (3.00, 15.00),
    "anthropic:claude-3-7-sonnet-latest": (3.00, 15.00),
    "anthropic:claude-sonnet-4-0": (3.00, 15.00),
    "anthropic:claude-opus-4-0": (15.00, 75.00),
}


@functools.cache
def _table(env_path: str | None) -> dict[str, tuple[float, float]]:
    table = dict(_BUILTIN)
    if not env_path:
        return table
    path = Path(env_path)
    try:
        raw = (
            yaml.safe_load(path.read_text(encoding="utf-8"))
            if path.suffix != ".json"
            else json.loads(path.read_text())
        )
        for key, price in (raw or {}).items():
            table[str(key)] = (float(price["prompt"]), float(price["completion"]))
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"PARLEY_PRICES={env_path}: cannot read prices ({exc}); expected "
            "'MODEL: {prompt: USD_PER_1M, completion: USD_PER_1M}' entries"
        ) from None
    return table


def price_of(model: str) -> tuple[float, float] | None:
    """(prompt, completion) USD per 1M tokens for a model string, or None when unknown."""
    if model.startswith(("scripted:", "function:")):
        return (0.0, 0.0)  # answered in process: no provider bills it
    return _table(os.environ.get("PARLEY_PRICES")).get(model)


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    price = price_of(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
