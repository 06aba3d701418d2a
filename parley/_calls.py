"""What parley decides about a model's tool call before any engine runs it: whether it can run at all (a tool
the role was given, arguments that are one JSON object of a bounded size). The standing answers (`--approve`/
`--deny`) to calls that need approval are parley.human's `standing_decision`, re-exported here."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .human import standing_decision

__all__ = ["MAX_ARGUMENTS", "ToolDenied", "call_problem", "denial", "standing_decision"]

MAX_ARGUMENTS = 256 * 1024
"""Characters of one tool call's arguments. A model that sends more gets a tool error, not a call."""


class ToolDenied(Exception):
    """Raised inside a gated tool when the human says no; the agent sees it as the tool's error."""


def denial(tool: str, reason: str) -> ToolDenied:
    """The error a denied call of `tool` ends with, in words that tell the model not to insist."""
    because = f": {reason}" if reason else ""
    return ToolDenied(f"the call to {tool} was denied{because}. Do not retry it unchanged.")


def call_problem(name: str, arguments: str, offered: Sequence[str]) -> str | None:
    """Why a model's tool call cannot run, in words the model can act on; None when it can.

    A model is not trusted to name a tool it was given, or to send its arguments as one JSON object:
    each of these becomes the call's error result, never a crash of the run."""
    if name not in offered:
        shown = name if len(name) <= 80 else name[:79] + "…"
        return (
            f"Error: there is no tool {shown!r} for you. Your tools are: {', '.join(offered) or 'none'}. "
            "Call one of them by its exact name, or answer without a tool."
        )
    if len(arguments) > MAX_ARGUMENTS:
        return (
            f"Error: the arguments of {name} are {len(arguments):,} characters; the limit is {MAX_ARGUMENTS:,}. "
            "Send less (write large content in several smaller calls)."
        )
    try:
        value: object = json.loads(arguments) if arguments.strip() else {}
    except ValueError as exc:
        return f"Error: the arguments of {name} are not valid JSON ({exc}). Send them as one JSON object."
    except RecursionError:
        return f"Error: the arguments of {name} are nested too deeply to read. Send them as one flat JSON object."
    if not isinstance(value, dict):
        return (
            f"Error: the arguments of {name} must be one JSON object (names to values), "
            f"not a JSON {type(value).__name__}."
        )
    return None
