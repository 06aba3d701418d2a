"""Models, as parley knows them whatever the engine: model strings, function models, scripts, prices, token
counts, limits, capabilities, and the meter's ledger.

The clients that call models (metered, scripted, embedded, remote) are the engine's:
`parley.engine.autogen.models`. This package imports nothing of the engine's.
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from ._cadence import STREAM_EVERY_S, Cadence
from ._caps import Capabilities, Traits, capabilities_from
from ._function import (
    FUNCTION,
    FunctionModel,
    Message,
    ModelFunction,
    ModelReply,
    ModelRequest,
    ToolCall,
    ToolResult,
    as_reply,
)
from ._limits import ASK_ABOVE, openai_base, probe_window, reply_cap_args, server_overflow
from ._meter import (
    DEFAULT_REPLY_CAP,
    BudgetExceeded,
    CallFailure,
    CallRecord,
    Meter,
    Retry,
    retry_after,
    transient,
)
from ._pricing import cost_usd, price_of
from ._ref import BACKENDS, ModelRef, parse_model
from ._scripted import (
    SELECTOR,
    SUMMARISER,
    CallsReply,
    HeldReply,
    JsonReply,
    Reply,
    ScriptCall,
    ScriptedModel,
    ScriptFile,
    ToolReply,
    reply_text,
)
from ._tokens import count_completion, count_messages, count_text, encoding

__all__ = [
    "ASK_ABOVE",
    "BACKENDS",
    "DEFAULT_REPLY_CAP",
    "FUNCTION",
    "SELECTOR",
    "STREAM_EVERY_S",
    "SUMMARISER",
    "VIA_ENV",
    "BudgetExceeded",
    "Cadence",
    "CallFailure",
    "CallRecord",
    "CallsReply",
    "Capabilities",
    "FunctionModel",
    "HeldReply",
    "JsonReply",
    "Message",
    "Meter",
    "ModelFunction",
    "ModelRef",
    "ModelReply",
    "ModelRequest",
    "Reply",
    "Retry",
    "ScriptCall",
    "ScriptFile",
    "ScriptedModel",
    "ToolCall",
    "ToolReply",
    "ToolResult",
    "Traits",
    "as_reply",
    "capabilities_from",
    "cost_usd",
    "count_completion",
    "count_messages",
    "count_text",
    "encoding",
    "openai_base",
    "parse_model",
    "price_of",
    "probe_window",
    "reply_cap_args",
    "reply_text",
    "retry_after",
    "scripted_via",
    "server_overflow",
    "transient",
]

VIA_ENV = "PARLEY_SCRIPTED_VIA"


def scripted_via() -> str | None:
    """Which wire protocol scripted roles speak (`PARLEY_SCRIPTED_VIA`): None (default, `direct`) answers in
    process; `openai` or `anthropic` serves the script over loopback HTTP to that backend's real client, so
    a script drives the production path (SDK, streamed tool calls)."""
    value = os.environ.get(VIA_ENV, "").strip().lower()
    if value in ("", "direct"):
        return None
    if value in ("openai", "anthropic"):
        return value
    raise ConfigError(f"{VIA_ENV}={value!r} is not a protocol: use openai, anthropic or direct (the default)")
