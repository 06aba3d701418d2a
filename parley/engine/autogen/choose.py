"""One constrained choice from a model: JSON-schema-bound where the backend supports it, parsed otherwise."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from autogen_core.models import ChatCompletionClient, LLMMessage


async def choose(
    client: ChatCompletionClient,
    prompt: Sequence[LLMMessage],
    choices: list[str],
    *,
    field: str,
    json_schema: bool,
) -> str | None:
    """Ask `client` to pick one of `choices`; None when its answer names none of them."""
    extra = {}
    if json_schema:
        extra["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": f"pick_{field}",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {field: {"type": "string", "enum": choices}},
                    "required": [field],
                    "additionalProperties": False,
                },
            },
        }
    result = await client.create(list(prompt), extra_create_args=extra)
    return parse_choice(result.content if isinstance(result.content, str) else "", choices, field)


def parse_choice(text: str, choices: list[str], field: str) -> str | None:
    """`{"FIELD": "x"}`, a bare choice, or the first choice named in the text."""
    try:
        data = json.loads(text)
        if isinstance(data, dict) and data.get(field) in choices:
            return str(data[field])
    except (ValueError, RecursionError):  # a model's answer nested thousands deep is just not JSON here
        pass
    stripped = text.strip().strip("`'\".").strip()
    if stripped in choices:
        return stripped
    found = [(m.start(), n) for n in choices for m in [re.search(rf"\b{re.escape(n)}\b", text)] if m]
    return min(found)[1] if found else None
