"""What a model can do, as parley's engine decides it: from the model info of the client that answers (never
from the backend's name), and what parley's own clients state besides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Traits:
    """What a client of parley's own states about itself that model info has no field for."""

    reflects: bool = True
    """It answers a second call after its tools ran (AutoGen's reflection on tool use)."""
    reasks: bool = True
    """Asking it again costs tokens only: False when every call takes the next reply of a script."""
    picks_reliably: bool = True
    """It follows a speaker-picking prompt: False for a model too small to (the selector then avoids repeats)."""
    response_format: bool = False
    """It takes OpenAI's `response_format` argument without being an OpenAI client."""


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What a role's (or the selector's) model can do."""

    tools: bool
    """It can call tools (model info's function_calling): tools, handoffs and delegation need it."""
    vision: bool
    """It reads images (model info's vision)."""
    json_schema: bool
    """Its answers can be bound to a JSON schema (model info's structured_output, through OpenAI's API)."""
    reflects: bool
    """A tool turn ends with the model answering its tools' results (a second call) rather than the results."""
    reasks: bool
    """A vote it failed to give may be asked for once more."""
    picks_reliably: bool
    """As the selector, it can be trusted to pick the same speaker twice in a row."""


def capabilities_from(info: Mapping[str, Any], traits: Traits, *, openai_api: bool = False) -> Capabilities:
    """What a model with this model info (AutoGen's) and these traits can do; `openai_api`: its client takes
    OpenAI's `response_format`."""
    tools = bool(info.get("function_calling"))
    return Capabilities(
        tools=tools,
        vision=bool(info.get("vision")),
        json_schema=bool(info.get("structured_output")) and (traits.response_format or openai_api),
        reflects=tools and traits.reflects,
        reasks=traits.reasks,
        picks_reliably=traits.picks_reliably,
    )
