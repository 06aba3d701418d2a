"""One JSON answer from a model of a pool, outside any conversation (an evaluation's judge)."""

from __future__ import annotations

from typing import Any

from autogen_core.models import SystemMessage, UserMessage

from .models import ModelPool

__all__ = ["answer_json"]


async def answer_json(
    pool: ModelPool, model: str, who: str, *, system: str, user: str, schema: dict[str, Any], name: str
) -> str:
    """The text of `model`'s answer (metered as `who`): bound to the JSON `schema` (called `name`) where the model
    takes one, asked in words otherwise; empty when it answers with anything but text. The caller reads it: a model
    may still answer what it likes."""
    extra: dict[str, Any] = {}
    if pool.capabilities(model).json_schema:
        extra["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": name, "strict": True, "schema": schema},
        }
    prompt = [SystemMessage(content=system), UserMessage(content=user, source="user")]
    result = await pool.client(model, who).create(prompt, extra_create_args=extra)
    return result.content if isinstance(result.content, str) else ""
