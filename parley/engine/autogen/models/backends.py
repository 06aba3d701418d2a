"""Remote backends through autogen-ext's clients; credentials come from the standard variables.

A client's model info (what the model can do: tools, vision, structured output) is the one autogen-ext's client
finds for a model it knows, through its public constructor (no `model_info` given); a model it does not know
gets GENERIC_INFO.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from autogen_core.models import ChatCompletionClient, ModelInfo

from ....errors import MissingKeyError, ModelStringError
from ....models import ModelRef

GENERIC_INFO: ModelInfo = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    "structured_output": True,
    "multiple_system_messages": True,
}
"""What a model autogen-ext does not know is taken to do (every OpenAI-compatible server parley targets does)."""


def with_known_info(make: Callable[..., ChatCompletionClient], **kwargs: Any) -> ChatCompletionClient:
    """`make(**kwargs)` with the model info autogen-ext's client finds itself for a model it knows, or
    GENERIC_INFO: its constructor raises ValueError for a name that is not in its table."""
    try:
        return make(**kwargs)
    except ValueError as exc:
        if "model_info" not in str(exc):
            raise
    return make(**kwargs, model_info=GENERIC_INFO)


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _need(backend: str, *names: str) -> str:
    for name in names:
        value = _env(name)
        if value:
            return value
    raise MissingKeyError(backend, names[0])


def build_remote(ref: ModelRef) -> ChatCompletionClient:
    builder = _BUILDERS.get(ref.backend)
    if builder is None:
        raise ModelStringError(f"backend {ref.backend!r} cannot be built here")
    return builder(ref)


# Every backend's SDK retries are off (max_retries=0): the meter retries transient failures itself,
# with backoff and jitter, and each retry is an event the user sees.


def _openai(ref: ModelRef) -> ChatCompletionClient:
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    key = _need("openai", "OPENAI_API_KEY")
    kwargs: dict[str, Any] = {}
    if _env("OPENAI_BASE_URL"):
        kwargs["base_url"] = _env("OPENAI_BASE_URL")
    return with_known_info(OpenAIChatCompletionClient, model=ref.name, api_key=key, max_retries=0, **kwargs)


def _azure(ref: ModelRef) -> ChatCompletionClient:
    from autogen_ext.models.openai import AzureOpenAIChatCompletionClient

    endpoint = _need("azure", "AZURE_OPENAI_ENDPOINT")
    key = _env("AZURE_OPENAI_API_KEY")
    if key is None:
        raise MissingKeyError("azure", "AZURE_OPENAI_API_KEY")
    version = _env("OPENAI_API_VERSION") or _env("AZURE_OPENAI_API_VERSION")
    if version is None:
        raise MissingKeyError("azure", "OPENAI_API_VERSION", "(the API version, e.g. 2024-10-21)")
    model = _env("PARLEY_AZURE_MODEL") or ref.name
    return with_known_info(
        AzureOpenAIChatCompletionClient,
        azure_deployment=ref.name,
        model=model,
        azure_endpoint=endpoint,
        api_key=key,
        api_version=version,
        max_retries=0,
    )


def _anthropic(ref: ModelRef) -> ChatCompletionClient:
    from autogen_ext.models.anthropic import AnthropicChatCompletionClient

    key = _need("anthropic", "ANTHROPIC_API_KEY")
    kwargs: dict[str, Any] = {}
    if _env("ANTHROPIC_BASE_URL"):
        kwargs["base_url"] = _env("ANTHROPIC_BASE_URL")
    return with_known_info(
        AnthropicChatCompletionClient, model=ref.name, api_key=key, max_tokens=2048, max_retries=0, **kwargs
    )


def _ollama(ref: ModelRef) -> ChatCompletionClient:
    from autogen_ext.models.ollama import OllamaChatCompletionClient

    host = _env("OLLAMA_HOST") or "http://127.0.0.1:11434"
    if not host.startswith(("http://", "https://")):
        host = f"http://{host}"
    return with_known_info(OllamaChatCompletionClient, model=ref.name, host=host)


def _compatible(ref: ModelRef) -> ChatCompletionClient:
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    return OpenAIChatCompletionClient(
        model=ref.name,
        base_url=ref.base_url or "",
        api_key=_env("PARLEY_COMPATIBLE_API_KEY") or "not-needed",
        model_info=GENERIC_INFO,
        max_retries=0,
    )


_BUILDERS = {
    "openai": _openai,
    "azure": _azure,
    "anthropic": _anthropic,
    "ollama": _ollama,
    "compatible": _compatible,
}
