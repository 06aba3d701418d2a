"""Each backend's limits: the argument that caps a reply, asking a server for its context window, and a
server's answer that a prompt did not fit."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

_CAP_KEYS = ("max_tokens", "max_completion_tokens", "max_new_tokens")
_REASONING = re.compile(r"^(o\d|gpt-5)", re.I)


def reply_cap_args(backend: str, name: str, cap: int, extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` with the reply cap in the form `backend` takes; a cap the caller set already is kept."""
    out = dict(extra)
    if any(k in out for k in _CAP_KEYS):
        return out
    if backend == "ollama":
        options = dict(out.get("options") or {})
        options.setdefault("num_predict", cap)
        out["options"] = options
    elif backend == "openai":
        # OpenAI's reasoning models refuse max_tokens; every OpenAI chat model (and llama.cpp, vLLM behind
        # OPENAI_BASE_URL) takes max_completion_tokens.
        out["max_completion_tokens"] = cap
    elif backend == "azure" and _REASONING.match(name):
        out["max_completion_tokens"] = cap  # older Azure API versions know only max_tokens, for older models
    else:
        out["max_tokens"] = cap  # azure, anthropic, compatible (llama.cpp, vLLM, LM Studio), local
    return out


ASK_ABOVE = 2048
"""A server is asked for its window only for a request longer than this (prompt and reply cap): any server
worth running holds that much, and a short request needs no round trip. A server's own refusal of a longer
prompt becomes the same clear error anyway."""


def openai_base() -> str | None:
    """The base URL of an OpenAI client pointed somewhere else than OpenAI (OPENAI_BASE_URL)."""
    url = os.environ.get("OPENAI_BASE_URL", "").strip()
    return url or None


async def probe_window(base_url: str, name: str) -> int | None:
    """Ask an OpenAI-compatible server for its context window: vLLM's /v1/models `max_model_len`, llama.cpp's
    /v1/models `meta.n_ctx` (per request slot) or its /props. Best effort: any failure means unknown."""
    import httpx

    key = os.environ.get("PARLEY_COMPATIBLE_API_KEY", "").strip()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    base = base_url.rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=3.0, headers=headers) as http:
            answer = await http.get(f"{base}/models")
            if answer.status_code == 200:
                found = _from_models(answer.json(), name)
                if found:
                    return found
            root = base[: -len("/v1")] if base.endswith("/v1") else base
            answer = await http.get(f"{root}/props")
            if answer.status_code == 200:
                props = answer.json()
                n = (
                    props.get("default_generation_settings", {}).get("n_ctx")
                    if isinstance(props, dict)
                    else None
                )
                return _positive(n)
    except (httpx.HTTPError, ValueError, TypeError, AttributeError):
        return None
    return None


def _from_models(listing: Any, name: str) -> int | None:
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        return None
    entries = [e for e in data if isinstance(e, dict)]
    mine = [e for e in entries if e.get("id") == name or name in (e.get("aliases") or ())]
    if not mine and len(entries) == 1:
        mine = entries
    for entry in mine:
        meta = entry.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        for n in (entry.get("max_model_len"), meta.get("n_ctx"), entry.get("context_length")):
            if _positive(n):
                return _positive(n)
    return None


def _positive(n: Any) -> int | None:
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


_OVERFLOW = (
    # llama.cpp: "request (9031 tokens) exceeds the available context size (4096 tokens), try increasing it"
    (re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)"), 1, 2),
    # OpenAI, vLLM: "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens ..."
    (
        re.compile(r"maximum context length is (\d+) tokens.*?(?:resulted in|requested) (\d+) tokens", re.S),
        2,
        1,
    ),
    # Anthropic: "prompt is too long: 210000 tokens > 200000 maximum"
    (re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum"), 1, 2),
)
_OVERFLOW_WORDS = (
    "exceeds the available context size",
    "context_length_exceeded",
    "exceed_context_size",
    "maximum context length",
    "prompt is too long",
    "context window",
)


def server_overflow(exc: BaseException) -> tuple[int | None, int | None, str] | None:
    """(prompt tokens, window, the server's words) if `exc` is a server saying the prompt did not fit."""
    status = getattr(exc, "status_code", None)
    if status is not None and status not in (400, 413, 422):
        return None
    body = getattr(exc, "body", None)
    text = str(exc)
    if isinstance(body, dict):
        text = f"{text} {body.get('message', '')} {body.get('type', '')} {body.get('code', '')}"
        prompt, window = _positive(body.get("n_prompt_tokens")), _positive(body.get("n_ctx"))
        if prompt and window:
            return prompt, window, str(body.get("message") or exc)
    if not any(word in text for word in _OVERFLOW_WORDS):
        return None
    for pattern, p, w in _OVERFLOW:
        m = pattern.search(text)
        if m:
            return int(m.group(p)), int(m.group(w)), str(exc)
    return None, None, str(exc)
