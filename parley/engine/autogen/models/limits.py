"""A client's context window: what parley's own clients state, what a server answers when asked, or the
table autogen-ext keeps for the models it knows."""

from __future__ import annotations

import weakref

from autogen_core.models import ChatCompletionClient

from ....models import ASK_ABOVE, openai_base, probe_window

_windows: weakref.WeakKeyDictionary[ChatCompletionClient, int | None] = weakref.WeakKeyDictionary()

_ASKS = ("openai", "azure", "compatible")
"""The APIs whose servers can be asked for their window (vLLM's and llama.cpp's /v1/models, llama.cpp's /props)."""


def stated_window(client: ChatCompletionClient) -> int | None:
    """The window a client of parley's own states (the embedded model's request slot); None for any other."""
    window = getattr(client, "window_tokens", None)
    return window if isinstance(window, int) and window > 0 else None


def known_window(client: ChatCompletionClient, model: str) -> int | None:
    """autogen-ext's token limit for `model` when `client` is its OpenAI or Anthropic client; None for a model its table does
    not know, or any other client.

    The one use of a private autogen-ext module in parley: the table is public only through the clients'
    `remaining_tokens`, which first counts the (empty) request with the model's own tiktoken encoding, and that
    downloads the encoding (o200k for current OpenAI models) on first use; parley runs offline. Pinned by
    tests/test_model_capabilities.py, which fails if the module moves or stops knowing the models it tests."""
    try:
        if _made_by(client, "autogen_ext.models.openai"):
            from autogen_ext.models.openai import _model_info as table
        elif _made_by(client, "autogen_ext.models.anthropic"):
            from autogen_ext.models.anthropic import _model_info as table  # type: ignore[no-redef]
        else:
            return None
        limit = table.get_token_limit(model)
    except (KeyError, ValueError, ImportError, TypeError):
        return None
    return limit if isinstance(limit, int) and limit > 0 else None


async def window_of(
    backend: str, name: str, base_url: str | None, inner: ChatCompletionClient, need: int
) -> int | None:
    """The model's context window in tokens as the client or its server tells it, or None when unknown (then
    nothing is checked before sending). `need` is the request's size; a server is asked once per client."""
    if inner in _windows:
        return _windows[inner]
    window = stated_window(inner)
    if window is None and backend in _ASKS:
        url = base_url if backend == "compatible" else openai_base()
        if url and need <= ASK_ABOVE:
            return None  # not asked yet
        window = await probe_window(url, name) if url else None
    if window is None and backend != "compatible":
        window = known_window(inner, name)
    # ollama: the server's num_ctx (2048 by default) silently truncates, and autogen-ext's table is not it.
    _windows[inner] = window
    return window


def _made_by(client: ChatCompletionClient, package: str) -> bool:
    return any(c.__module__.startswith(package) for c in type(client).__mro__)
