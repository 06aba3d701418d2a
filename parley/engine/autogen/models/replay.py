"""The scripted model served over HTTP, in the wire formats of OpenAI's chat completions and Anthropic's
Messages API, so a script can drive parley's production path: the real SDK client, its tool calls (one,
several at once, streamed in pieces) and AutoGen's reflection on tool use.

One loopback server per process, on its own thread (so it outlives any one event loop). Each client of
a script gets its own address: `http://127.0.0.1:PORT/r/<token>/v1` for OpenAI's SDK and
`http://127.0.0.1:PORT/r/<token>` for Anthropic's (which adds `/v1/messages` itself); the token stands
for one script and one role (or the selector, or the summariser), the script's cursor.

A call that only asks for a summary of tool results just received (AutoGen's reflection: no tools
offered, or `tool_choice` none, and the request's latest tool results not yet answered) takes no
script reply: it answers with those results' text joined by newlines, exactly what AutoGen's
ToolCallSummaryMessage carries when reflection is off, so the scripted and the production paths
produce the same conversation.

Tool calls go out as a model would send them: `raw_args` verbatim even when it is not JSON, a
scripted `id` even when it repeats. A text longer than the request's reply cap (`max_tokens`,
`max_completion_tokens`) is cut there and says so (`length`, `max_tokens`), as a server does; a plain-text
reply to a request bound to a one-field JSON schema (parley's picks) goes out as that JSON. Usage is counted
with tiktoken and reported (in the final chunk of a stream when `stream_options.include_usage` asks for
it). Requests are checked as strictly as the real servers check them (.wire). A script that
runs out answers 400, and the replay client raises the script's own ScriptExhaustedError.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import socket
import ssl
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autogen_core.models import AssistantMessage, LLMMessage, SystemMessage, UserMessage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ....errors import ScriptExhaustedError
from ....models import (
    CallsReply,
    Reply,
    ScriptCall,
    ScriptedModel,
    ToolReply,
    Traits,
    count_text,
    reply_text,
)
from .backends import GENERIC_INFO
from .wire import (
    Answer,
    BadRequest,
    Call,
    anthropic_reflecting,
    anthropic_stream,
    anthropic_whole,
    as_schema,
    capped,
    check_anthropic,
    check_openai,
    openai_reflecting,
    openai_stream,
    openai_whole,
    reply_cap,
    schema_field,
    text_of,
    tool_results_anthropic,
    tool_results_openai,
)


@dataclass(frozen=True)
class _Route:
    model: ScriptedModel
    who: str


def _as_llm(messages: Sequence[Any], system: Any = None) -> list[LLMMessage]:
    """The request's messages as AutoGen messages, for the script's records and its extractive summariser."""
    out: list[LLMMessage] = []
    if system:
        out.append(SystemMessage(content=text_of(system)))
    for m in messages:
        if not isinstance(m, dict):
            continue
        text = text_of(m.get("content"))
        if m.get("role") == "system":
            out.append(SystemMessage(content=text))
        elif m.get("role") == "assistant":
            out.append(AssistantMessage(content=text, source=str(m.get("name") or "assistant")))
        else:
            out.append(UserMessage(content=text, source=str(m.get("name") or m.get("role") or "user")))
    return out


def _calls(reply: ToolReply | CallsReply) -> tuple[Call, ...]:
    return tuple(
        Call(
            id=r.id if r.id is not None else f"call_{uuid.uuid4().hex[:24]}",
            name=r.tool,
            arguments=r.raw_args if r.raw_args is not None else json.dumps(r.args),
        )
        for r in (reply.calls if isinstance(reply, CallsReply) else [reply])
    )


def _answer(
    route: _Route, messages: Sequence[Any], results: list[str] | None, reflecting: bool, system: Any = None
) -> Answer:
    prompt = count_text(json.dumps(messages, default=str)) + (count_text(text_of(system)) if system else 0)
    model = route.model
    if reflecting and results is not None:
        # AutoGen's reflection call: the script's reply for this turn was the tool call itself.
        return Answer(text="\n".join(results), calls=(), prompt_tokens=prompt, delay_s=0.0)
    llm = _as_llm(messages, system)
    try:
        reply: Reply = model.next_reply(route.who, llm)
    except ScriptExhaustedError as exc:
        raise BadRequest(f"{type(exc).__name__}: {exc}", exc) from None
    model.calls.append(ScriptCall(route.who, llm))
    delay = model.script.delay_for(route.who)
    if isinstance(reply, (ToolReply, CallsReply)):
        return Answer(text=None, calls=_calls(reply), prompt_tokens=prompt, delay_s=delay)
    return Answer(text=reply_text(reply), calls=(), prompt_tokens=prompt, delay_s=delay)


# --- the server ------------------------------------------------------------------------------------------


class ReplayServer:
    """A loopback HTTP server answering for registered scripts, on a daemon thread of its own."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}
        self._failures: dict[str, Exception] = {}
        self._lock = threading.Lock()
        self._port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._served: Counter[str] = Counter()

    @property
    def served(self) -> Counter[str]:
        """Requests answered so far, by kind: `openai`/`anthropic`, `streamed`, `tool_calls` (calls sent),
        `reflections`, `json_schema` (answers bound to a schema), `cut` (streams the client left before their
        end). A copy: the server thread goes on counting."""
        with self._lock:
            return self._served.copy()

    @property
    def port(self) -> int:
        self._start()
        assert self._port is not None
        return self._port

    def register(self, model: ScriptedModel, who: str) -> str:
        """A token for one script's role (its cursor); its address is `openai_url(token)` or `anthropic_url(token)`."""
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._routes[token] = _Route(model, who)
        return token

    def forget(self, token: str) -> None:
        with self._lock:
            self._routes.pop(token, None)
            self._failures.pop(token, None)

    def take_failure(self, token: str) -> Exception | None:
        """The script's own error behind the last 400 at `token` (a script that ran out), once."""
        with self._lock:
            return self._failures.pop(token, None)

    def _failed(self, request: Request, exc: BadRequest) -> None:
        if exc.cause is not None:
            with self._lock:
                self._failures[request.path_params["token"]] = exc.cause

    def openai_url(self, token: str) -> str:
        return f"http://127.0.0.1:{self.port}/r/{token}/v1"

    def anthropic_url(self, token: str) -> str:
        return f"http://127.0.0.1:{self.port}/r/{token}"

    def _route(self, token: str) -> _Route | None:
        with self._lock:
            return self._routes.get(token)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            import uvicorn

            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)  # connections wait in the backlog until the server thread accepts them
            self._port = sock.getsockname()[1]
            config = uvicorn.Config(
                self._app(),
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=1,
            )
            self._server = uvicorn.Server(config)
            self._thread = threading.Thread(
                target=asyncio.run, args=(self._server.serve([sock]),), name="parley-replay", daemon=True
            )
            self._thread.start()

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/r/{token}/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/r/{token}/v1/messages", self._messages, methods=["POST"]),
                Route("/r/{token}/v1/models", self._models, methods=["GET"]),
            ]
        )

    async def _body_of(self, request: Request) -> tuple[_Route, dict[str, Any]]:
        route = self._route(request.path_params["token"])
        if route is None:
            raise BadRequest("no script answers at this address (the conversation that used it has ended)")
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise BadRequest(f"the request body is not JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise BadRequest("the request body must be a JSON object with a `messages` list")
        return route, body

    async def _counted(self, chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        finished = False
        try:
            async for chunk in chunks:
                yield chunk
            finished = True
        finally:
            if not finished:  # the client went away mid-answer (a stop, an interrupt): generation stops
                with self._lock:
                    self._served["cut"] += 1

    def _stream(self, chunks: AsyncIterator[str]) -> Response:
        return StreamingResponse(
            self._counted(chunks), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    async def _chat(self, request: Request) -> Response:
        try:
            route, body = await self._body_of(request)
            messages = body["messages"]
            check_openai(messages)
            results = tool_results_openai(messages)
            reflecting = openai_reflecting(body) and results is not None
            cap = reply_cap(body, "max_completion_tokens", "max_tokens")
            answer = capped(as_schema(_answer(route, messages, results, reflecting), schema_field(body)), cap)
        except BadRequest as exc:
            self._failed(request, exc)
            return JSONResponse(
                {
                    "error": {
                        "message": str(exc),
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
                status_code=400,
            )
        self._count("openai", body, answer, reflecting)
        model = str(body.get("model") or "scripted")
        if body.get("stream"):
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return self._stream(openai_stream(answer, model, usage))
        await asyncio.sleep(answer.delay_s)
        return JSONResponse(openai_whole(answer, model))

    async def _messages(self, request: Request) -> Response:
        try:
            route, body = await self._body_of(request)
            messages = body["messages"]
            check_anthropic(messages)
            results = tool_results_anthropic(messages)
            reflecting = anthropic_reflecting(body) and results is not None
            cap = reply_cap(body, "max_tokens")
            answer = capped(_answer(route, messages, results, reflecting, body.get("system")), cap)
        except BadRequest as exc:
            self._failed(request, exc)
            return JSONResponse(
                {"type": "error", "error": {"type": "invalid_request_error", "message": str(exc)}},
                status_code=400,
            )
        self._count("anthropic", body, answer, reflecting)
        model = str(body.get("model") or "scripted")
        if body.get("stream"):
            return self._stream(anthropic_stream(answer, model))
        await asyncio.sleep(answer.delay_s)
        return JSONResponse(anthropic_whole(answer, model))

    async def _models(self, request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "parley"}],
            }
        )

    def _count(self, api: str, body: Mapping[str, Any], answer: Answer, reflected: bool) -> None:
        with self._lock:
            self._served.update(
                {
                    api: 1,
                    "streamed": int(bool(body.get("stream"))),
                    "tool_calls": len(answer.calls),
                    "reflections": int(reflected),
                    "json_schema": int(schema_field(body) is not None),
                }
            )


_SERVER = ReplayServer()


def replay_server() -> ReplayServer:
    """The process's replay server (started on first use)."""
    return _SERVER


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every replay client: the SDKs build one per client otherwise (0.15 s each, for
    loading the CA bundle), though the replay server speaks plain HTTP on loopback and never uses it."""
    return ssl.create_default_context()


def replay_client(model: ScriptedModel, who: str, api: str) -> tuple[Any, str]:
    """A real SDK client (autogen-ext's, SDK retries off as for every backend) answered by `model` for
    `who` through the replay server, and the token to `forget` when the client is closed."""
    server = replay_server()
    token = server.register(model, who)
    if api == "anthropic":
        import anthropic

        return _replayed("anthropic")(
            token,
            model="scripted",
            base_url=server.anthropic_url(token),
            api_key="replay",
            model_info=GENERIC_INFO,
            max_tokens=2048,
            max_retries=0,
            http_client=anthropic.DefaultAsyncHttpxClient(verify=_tls()),
        ), token
    import openai

    return _replayed("openai")(
        token,
        model="scripted",
        base_url=server.openai_url(token),
        api_key="replay",
        model_info=GENERIC_INFO,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(verify=_tls()),
    ), token


@functools.cache
def _replayed(api: str) -> Any:
    """autogen-ext's client for `api`, unchanged but for one thing: a script that ran out raises its own
    ScriptExhaustedError (naming the role and what to add), as in process, not the SDK's 400 about it."""
    if api == "anthropic":
        from autogen_ext.models.anthropic import AnthropicChatCompletionClient as base
    else:
        from autogen_ext.models.openai import OpenAIChatCompletionClient as base  # type: ignore[assignment]

    class Replayed(base):  # type: ignore[valid-type,misc]
        traits = Traits(reasks=False)  # every call of a script takes its next reply

        def __init__(self, token: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._replay_token = token

        async def create(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super().create(*args, **kwargs)
            except Exception:
                own = replay_server().take_failure(self._replay_token)
                if own is None:
                    raise
                raise own from None

        async def create_stream(self, *args: Any, **kwargs: Any) -> Any:
            try:
                async for item in super().create_stream(*args, **kwargs):
                    yield item
            except Exception:
                own = replay_server().take_failure(self._replay_token)
                if own is None:
                    raise
                raise own from None

    Replayed.__name__ = Replayed.__qualname__ = f"Replayed{base.__name__}"
    return Replayed
