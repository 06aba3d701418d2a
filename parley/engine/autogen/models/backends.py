"""Remote backends through autogen-ext's clients; credentials come from the standard variables."""

from __future__ import annotations

import os
from typing import Any

from autogen_core.models import ChatCompletionClient, ModelInfo

from ..errors import MissingKeyError, ModelStringError
from ._ref import ModelRef

_GENERIC_INFO: ModelInfo = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    "structured_output": True,
    "multiple_system_messages": True,
}


def _info(module: Any, name: str) -> ModelInfo:
    try:
        info: ModelInfo = module.get_info(name)
        return info
    except (KeyError, ValueError):
        return _GENERIC_INFO


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
    from autogen_ext.models.openai import OpenAIChatCompletionClient, _model_info

    key = _need("openai", "OPENAI_API_KEY")
    kwargs: dict[str, Any] = {}
    if _env("OPENAI_BASE_URL"):
        kwargs["base_url"] = _env("OPENAI_BASE_URL")
    return OpenAIChatCompletionClient(
        model=ref.name, api_key=key, model_info=_info(_model_info, ref.name), max_retries=0,
        **kwargs,
    )


def _azure(ref: ModelRef) -> ChatCompletionClient:
    from autogen_ext.models.openai import AzureOpenAIChatCompletionClient, _model_info

    endpoint = _need("azure", "AZURE_OPENAI_ENDPOINT")
    key = _env("AZURE_OPENAI_API_KEY")
    if key is None:
        raise MissingKeyError("azure", "AZURE_OPENAI_API_KEY")
    version = _env("OPENAI_API_VERSION") or _env("AZURE_OPENAI_API_VERSION")
    if version is None:
        raise MissingKeyError("azure", "OPENAI_API_VERSION", "(the API version, e.g. 2024-10-21)")
    model = _env("PARLEY_AZURE_MODEL") or ref.name
    return AzureOpenAIChatCompletionClient(
        azure_deployment=ref.name, model=model, azure_endpoint=endpoint, api_key=key,
        api_version=version, model_info=_info(_model_info, model), max_retries=0,
    )


def _anthropic(ref: ModelRef) -> ChatCompletionClient:
    from autogen_ext.models.anthropic import AnthropicChatCompletionClient, _model_info

    key = _need("anthropic", "ANTHROPIC_API_KEY")
    kwargs: dict[str, Any] = {}
    if _env("ANTHROPIC_BASE_URL"):
        kwargs["base_url"] = _env("ANTHROPIC_BASE_URL")
    return AnthropicChatCompletionClient(
        model=ref.name, api_key=key, model_info=_info(_model_info, ref.name), max_tokens=2048, max_retries=0,
        **kwargs,
    )


def _ollama(ref: ModelRef) -> ChatCompletionClient:
    from autogen_ext.models.ollama import OllamaChatCompletionClient, _model_info

    host = _env("OLLAMA_HOST") or "http://127.0.0.1:11434"
    if not host.startswith(("http://", "https://")):
        host = f"http://{host}"
    return OllamaChatCompletionClient(model=ref.name, host=host, model_info=_info(_model_info, ref.name))


def _compatible(ref: ModelRef) -> ChatCompletionClient:
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    return OpenAIChatCompletionClient(
        model=ref.name, base_url=ref.base_url, api_key=_env("PARLEY_COMPATIBLE_API_KEY") or "not-needed",
        model_info=_GENERIC_INFO, max_retries=0,
    )


_BUILDERS = {
    "openai": _openai,
    "azure": _azure,
    "anthropic": _anthropic,
    "ollama": _ollama,
    "compatible": _compatible,
}
