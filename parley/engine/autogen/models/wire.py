"""The two wire formats the replay server speaks (parley.models._replay): OpenAI's chat completions and
Anthropic's Messages API. Reading a request (its tool results, checked as strictly as the real servers check
them, with their own words) and writing an answer, whole or streamed as those servers stream it."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ....models import count_text

ARG_PIECES = 3
"""A streamed tool call's arguments arrive in this many pieces (at most), as real servers split them."""


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Answer:
    """What one request is answered with: text, or tool calls."""

    text: str | None
    calls: tuple[Call, ...]
    prompt_tokens: int
    delay_s: float
    cut: bool = False
    """The text was cut at the request's reply cap (`max_tokens`), as a server cuts a long answer."""

    @property
    def finish(self) -> str:
        return "tool_calls" if self.calls else "length" if self.cut else "stop"


class BadRequest(Exception):
    """A request the replay cannot answer (malformed, or the script ran out): answered with 400."""

    def __init__(self, message: str, cause: Exception | None = None) -> None:
        super().__init__(message)
        self.cause = cause


def text_of(content: Any) -> str:
    """The text of a wire message's content: a string, or a list of parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    out.append(part["text"])
                elif part.get("type") == "tool_result":
                    out.append(text_of(part.get("content")))
        return "\n".join(out)
    return ""


def tool_results_openai(messages: Sequence[Any]) -> list[str] | None:
    """The tool results after the last assistant message, if that message called tools (else None)."""
    results: list[str] = []
    for m in reversed(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role == "tool":
            results.append(text_of(m.get("content")))
        elif role == "assistant":
            return list(reversed(results)) if results and m.get("tool_calls") else None
    return None


def tool_results_anthropic(messages: Sequence[Any]) -> list[str] | None:
    """The same for Anthropic's shape, where tool results are `tool_result` blocks of user messages."""
    found: list[list[str]] = []
    for m in reversed(messages):
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        if m.get("role") == "assistant":
            results = [text for group in reversed(found) for text in group]
            return results if results and any(b.get("type") == "tool_use" for b in blocks) else None
        found.append([text_of(b.get("content")) for b in blocks if b.get("type") == "tool_result"])
    return None


def check_openai(messages: Sequence[Any]) -> None:
    """Refuse what OpenAI or llama.cpp's server refuses: tool results that answer no call of the assistant
    message before them, calls left without results, and two assistant messages ending the list."""
    open_ids: set[Any] = set()  # ids as the request gives them (a missing one is None)
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a `role`")
        open_ids = _openai_step(i, m, open_ids)
    if open_ids:
        raise BadRequest("the last assistant message's 'tool_calls' have no tool messages responding to them")
    if len(messages) >= 2 and all(m.get("role") == "assistant" for m in messages[-2:]):
        raise BadRequest("Cannot have 2 or more assistant messages at the end of the list.")


def _openai_step(i: int, m: Mapping[str, Any], open_ids: set[Any]) -> set[Any]:
    """The tool-call ids still to be answered after message `i` (refusing it if it breaks the pairing)."""
    if m["role"] == "tool":
        if m.get("tool_call_id") not in open_ids:
            raise BadRequest(
                f"messages[{i}]: a message with role 'tool' must be a response to a preceding "
                f"message with 'tool_calls' (tool_call_id {m.get('tool_call_id')!r})"
            )
        return open_ids - {m["tool_call_id"]}
    if open_ids:
        raise BadRequest(
            f"messages[{i}]: an assistant message with 'tool_calls' must be followed by tool "
            f"messages responding to each 'tool_call_id' (missing: {', '.join(sorted(open_ids))})"
        )
    if m["role"] != "assistant":
        return open_ids
    ids = [c.get("id") for c in m.get("tool_calls") or [] if isinstance(c, dict)]
    if len(set(ids)) != len(ids):
        raise BadRequest(f"messages[{i}]: tool call ids must be unique within a message")
    return set(ids)


def check_anthropic(messages: Sequence[Any]) -> None:
    """Refuse what Anthropic's API refuses: tool_result blocks that answer no tool_use of the assistant message
    just before, and a system role inside `messages` (the system prompt is a top-level field)."""
    used: set[Any] = set()
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = (
            [b for b in m.get("content") or [] if isinstance(b, dict)]
            if isinstance(m.get("content"), list)
            else []
        )
        if m["role"] == "assistant":
            used = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
            continue
        for b in blocks:
            if b.get("type") == "tool_result" and b.get("tool_use_id") not in used:
                raise BadRequest(
                    f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{b.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                    f"`tool_use` block in the previous message."
                )
        used = set()


def reply_cap(body: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        cap = body.get(key)
        if cap is None:
            continue
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise BadRequest(f"`{key}` must be a positive integer, not {cap!r}")
        return cap
    return None


def capped(answer: Answer, cap: int | None) -> Answer:
    """The answer cut at `cap` tokens, as a server stops generating there (tool calls are left whole)."""
    if cap is None or answer.text is None or count_text(answer.text) <= cap:
        return answer
    from ....models import encoding

    tokens = encoding().encode(answer.text, disallowed_special=())
    return replace(answer, text=encoding().decode(tokens[:cap]), cut=True)


def schema_field(body: Mapping[str, Any]) -> str | None:
    """The one string field a `response_format` JSON schema asks for (parley's picks: speaker, answer)."""
    fmt = body.get("response_format")
    spec = fmt.get("json_schema") if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
    schema = spec.get("schema") if isinstance(spec, dict) else None
    props = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(props, dict) and len(props) == 1 and schema.get("required") == list(props):  # type: ignore[union-attr]
        [(name, prop)] = props.items()
        if isinstance(prop, dict) and prop.get("type") == "string":
            return str(name)
    return None


def as_schema(answer: Answer, field: str | None) -> Answer:
    """A plain-text pick as the JSON a schema-bound server sends (`{"speaker": "billing"}`); a reply that
    is JSON already goes out as scripted, to test what a model that ignores the schema does."""
    if field is None or answer.text is None:
        return answer
    try:
        json.loads(answer.text)
        return answer
    except ValueError:
        return replace(answer, text=json.dumps({field: answer.text}))


def _completion_tokens(answer: Answer) -> int:
    if answer.text is not None:
        return count_text(answer.text)
    return sum(count_text(c.name) + count_text(c.arguments) for c in answer.calls)


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text) or [text]


def _pieces(text: str, n: int = ARG_PIECES) -> list[str]:
    if not text:
        return [""]
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data) if not isinstance(data, str) else data}\n\n"


# --- OpenAI chat completions -----------------------------------------------------------------------------


def openai_reflecting(body: Mapping[str, Any]) -> bool:
    return body.get("tool_choice") == "none" or not body.get("tools")


def _openai_message(answer: Answer) -> dict[str, Any]:
    if answer.calls:
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in answer.calls
            ],
        }
    return {"role": "assistant", "content": answer.text}


def _openai_usage(answer: Answer) -> dict[str, int]:
    completion = _completion_tokens(answer)
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": answer.prompt_tokens + completion,
    }


def openai_whole(answer: Answer, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": _openai_message(answer), "finish_reason": answer.finish, "logprobs": None}
        ],
        "usage": _openai_usage(answer),
    }


async def openai_stream(answer: Answer, model: str, usage: bool) -> AsyncIterator[str]:
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if usage:
            body["usage"] = None
        return _sse(body)

    yield chunk({"role": "assistant", "content": ""})
    if answer.calls:
        await asyncio.sleep(answer.delay_s)
        for i, call in enumerate(answer.calls):
            # The first piece names the call; its arguments follow in pieces, keyed by the call's index only.
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            for piece in _pieces(call.arguments):
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        yield chunk({}, "tool_calls")
    else:
        words = _words(answer.text or "")
        for word in words:
            await asyncio.sleep(answer.delay_s / len(words))
            yield chunk({"content": word})
        yield chunk({}, answer.finish)
    if usage:
        yield _sse({**head, "choices": [], "usage": _openai_usage(answer)})
    yield _sse("[DONE]")


# --- Anthropic Messages ----------------------------------------------------------------------------------


_STOP = {"tool_calls": "tool_use", "length": "max_tokens", "stop": "end_turn"}


def anthropic_reflecting(body: Mapping[str, Any]) -> bool:
    choice = body.get("tool_choice")
    return (isinstance(choice, dict) and choice.get("type") == "none") or not body.get("tools")


def _tool_input(arguments: str) -> Any:
    """A call's input as Anthropic carries it: the parsed JSON, or the text itself when it is not JSON."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _anthropic_blocks(answer: Answer) -> list[dict[str, Any]]:
    if answer.calls:
        return [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": _tool_input(c.arguments)}
            for c in answer.calls
        ]
    return [{"type": "text", "text": answer.text or ""}]


def anthropic_whole(answer: Answer, model: str) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _anthropic_blocks(answer),
        "stop_reason": _STOP[answer.finish],
        "stop_sequence": None,
        "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": _completion_tokens(answer)},
    }


async def anthropic_stream(answer: Answer, model: str) -> AsyncIterator[str]:
    message = {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": 0},
    }
    yield _sse({"type": "message_start", "message": message}, "message_start")
    if answer.calls:
        await asyncio.sleep(answer.delay_s)
        for i, call in enumerate(answer.calls):
            yield _sse(
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}},
                },
                "content_block_start",
            )
            for piece in _pieces(call.arguments):
                yield _sse(
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                    "content_block_delta",
                )
            yield _sse({"type": "content_block_stop", "index": i}, "content_block_stop")
    else:
        yield _sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        )
        words = _words(answer.text or "")
        for word in words:
            await asyncio.sleep(answer.delay_s / len(words))
            yield _sse(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
                "content_block_delta",
            )
        yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    yield _sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP[answer.finish], "stop_sequence": None},
            "usage": {"output_tokens": _completion_tokens(answer)},
        },
        "message_delta",
    )
    yield _sse({"type": "message_stop"}, "message_stop")
