"""The model clients on AutoGen's ChatCompletionClient: metered, scripted, embedded, function and remote, and
the pool that builds them. What is parley's own about models (strings, scripts, prices, tokens, the meter's
ledger, capabilities) is parley.models."""

from __future__ import annotations

from .function import FunctionClient, as_message
from .metered import MeteredClient, own_calls
from .pool import ModelLike, ModelPool, capabilities_of
from .scripted import ScriptedClient

__all__ = [
    "FunctionClient",
    "MeteredClient",
    "ModelLike",
    "ModelPool",
    "ScriptedClient",
    "as_message",
    "capabilities_of",
    "own_calls",
]
