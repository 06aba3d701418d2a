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
`max_completion_tokens`) is cut there and says so; a plain-text reply to a request bound to a
one-field JSON schema (parley's picks) goes out as that JSON (`length`, `max_tokens`), as a server does. Usage is
counted with tiktoken and reported (in the final chunk of a stream when `stream_options.include_usage`
asks for it). A script that runs out answers 400 with the ScriptExhaustedError text. Requests are checked
as strictly as the real servers check them (tool results paired with their calls; no two assistant
messages ending an OpenAI-style list, which llama.cpp's server refuses), with the servers' own words.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from autogen_core.models import AssistantMessage, LLMMessage, SystemMessage, UserMessage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import ScriptExhaustedError
from ._scripted import CallsReply, JsonReply, Reply, ScriptCall, ScriptedModel, ToolReply
from ._tokens import count_text

ARG_PIECES = 3
"""A streamed tool call's arguments arrive in this many pieces (at most), as real servers split them."""


@dataclass(frozen=True)
class _Call:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class _Answer:
    """What one request is answered with: text, or tool calls."""

    text: str | None
    calls: tuple[_Call, ...]
    prompt_tokens: int
    delay_s: float
    cut: bool = False
    """The text was cut at the request's reply cap (`max_tokens`), as a server cuts a long answer."""

    @property
    def finish(self) -> str:
        return "tool_calls" if self.calls else "length" if self.cut else "stop"


@dataclass(frozen=True)
class _Route:
    model: ScriptedModel
    who: str


class BadRequest(Exception):
    """A request the replay cannot answer (malformed, or the script ran out): answered with 400."""

    def __init__(self, message: str, cause: Exception | None = None) -> None:
        super().__init__(message)
        self.cause = cause


def _text_of(content: Any) -> str:
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
                    out.append(_text_of(part.get("content")))
        return "\n".join(out)
    return ""


def _tool_results_openai(messages: Sequence[Any]) -> list[str] | None:
    """The tool results after the last assistant message, if that message called tools (else None)."""
    results: list[str] = []
    for m in reversed(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role == "tool":
            results.append(_text_of(m.get("content")))
        elif role == "assistant":
            return list(reversed(results)) if results and m.get("tool_calls") else None
    return None


def _tool_results_anthropic(messages: Sequence[Any]) -> list[str] | None:
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
        found.append([_text_of(b.get("content")) for b in blocks if b.get("type") == "tool_result"])
    return None


def _as_llm(messages: Sequence[Any], system: Any = None) -> list[LLMMessage]:
    """The request's messages as AutoGen messages, for the script's records and its extractive summariser."""
    out: list[LLMMessage] = []
    if system:
        out.append(SystemMessage(content=_text_of(system)))
    for m in messages:
        if not isinstance(m, dict):
            continue
        text = _text_of(m.get("content"))
        if m.get("role") == "system":
            out.append(SystemMessage(content=text))
        elif m.get("role") == "assistant":
            out.append(AssistantMessage(content=text, source=str(m.get("name") or "assistant")))
        else:
            out.append(UserMessage(content=text, source=str(m.get("name") or m.get("role") or "user")))
    return out


def _check_openai(messages: Sequence[Any]) -> None:
    """Refuse what OpenAI or llama.cpp's server refuses: tool results that answer no call of the assistant
    message before them, calls left without results, and two assistant messages ending the list."""
    open_ids: set[str] = set()
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a `role`")
        role = m["role"]
        if role == "tool":
            if m.get("tool_call_id") not in open_ids:
                raise BadRequest(f"messages[{i}]: a message with role 'tool' must be a response to a preceding "
                                 f"message with 'tool_calls' (tool_call_id {m.get('tool_call_id')!r})")
            open_ids.discard(m["tool_call_id"])
            continue
        if open_ids:
            raise BadRequest(f"messages[{i}]: an assistant message with 'tool_calls' must be followed by tool "
                             f"messages responding to each 'tool_call_id' (missing: {', '.join(sorted(open_ids))})")
        if role == "assistant":
            ids = [c.get("id") for c in m.get("tool_calls") or [] if isinstance(c, dict)]
            if len(set(ids)) != len(ids):
                raise BadRequest(f"messages[{i}]: tool call ids must be unique within a message")
            open_ids = set(ids)
    if open_ids:
        raise BadRequest("the last assistant message's 'tool_calls' have no tool messages responding to them")
    if len(messages) >= 2 and all(m.get("role") == "assistant" for m in messages[-2:]):
        raise BadRequest("Cannot have 2 or more assistant messages at the end of the list.")


def _check_anthropic(messages: Sequence[Any]) -> None:
    """Refuse what Anthropic's API refuses: tool_result blocks that answer no tool_use of the assistant message
    just before, and a system role inside `messages` (the system prompt is a top-level field)."""
    used: set[str] = set()
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = [b for b in m.get("content") or [] if isinstance(b, dict)] if isinstance(m.get("content"), list) \
            else []
        if m["role"] == "assistant":
            used = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
            continue
        for b in blocks:
            if b.get("type") == "tool_result" and b.get("tool_use_id") not in used:
                raise BadRequest(f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: "
                                 f"{b.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                                 f"`tool_use` block in the previous message.")
        used = set()


def _calls(reply: ToolReply | CallsReply) -> tuple[_Call, ...]:
    return tuple(_Call(id=r.id if r.id is not None else f"call_{uuid.uuid4().hex[:24]}", name=r.tool,
                       arguments=r.raw_args if r.raw_args is not None else json.dumps(r.args))
                 for r in (reply.calls if isinstance(reply, CallsReply) else [reply]))


def _reply_cap(body: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        cap = body.get(key)
        if cap is None:
            continue
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise BadRequest(f"`{key}` must be a positive integer, not {cap!r}")
        return cap
    return None


def _capped(answer: _Answer, cap: int | None) -> _Answer:
    """The answer cut at `cap` tokens, as a server stops generating there (tool calls are left whole)."""
    if cap is None or answer.text is None or count_text(answer.text) <= cap:
        return answer
    from ._tokens import encoding

    tokens = encoding().encode(answer.text, disallowed_special=())
    return replace(answer, text=encoding().decode(tokens[:cap]), cut=True)


def _schema_field(body: Mapping[str, Any]) -> str | None:
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


def _as_schema(answer: _Answer, field: str | None) -> _Answer:
    """A plain-text pick as the JSON a schema-bound server sends (`{"speaker": "billing"}`); a reply that
    is JSON already goes out as scripted, to test what a model that ignores the schema does."""
    if field is None or answer.text is None:
        return answer
    try:
        json.loads(answer.text)
        return answer
    except ValueError:
        return replace(answer, text=json.dumps({field: answer.text}))


def _answer(route: _Route, messages: Sequence[Any], results: list[str] | None, reflecting: bool,
            system: Any = None) -> _Answer:
    prompt = count_text(json.dumps(messages, default=str)) + (count_text(_text_of(system)) if system else 0)
    model = route.model
    if reflecting and results is not None:
        # AutoGen's reflection call: the script's reply for this turn was the tool call itself.
        return _Answer(text="\n".join(results), calls=(), prompt_tokens=prompt, delay_s=0.0)
    llm = _as_llm(messages, system)
    try:
        reply: Reply = model.next_reply(route.who, llm)
    except ScriptExhaustedError as exc:
        raise BadRequest(f"{type(exc).__name__}: {exc}", exc) from None
    model.calls.append(ScriptCall(route.who, llm))
    delay = model.script.delay_s
    if isinstance(reply, (ToolReply, CallsReply)):
        return _Answer(text=None, calls=_calls(reply), prompt_tokens=prompt, delay_s=delay)
    text = json.dumps(reply.json_) if isinstance(reply, JsonReply) else reply
    return _Answer(text=text, calls=(), prompt_tokens=prompt, delay_s=delay)


def _completion_tokens(answer: _Answer) -> int:
    if answer.text is not None:
        return count_text(answer.text)
    return sum(count_text(c.name) + count_text(c.arguments) for c in answer.calls)


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text) or [text]


def _pieces(text: str, n: int = ARG_PIECES) -> list[str]:
    if not text:
        return [""]
    size = max(1, -(-len(text) // n))
    return [text[i:i + size] for i in range(0, len(text), size)]


def _sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data) if not isinstance(data, str) else data}\n\n"


# --- OpenAI chat completions -----------------------------------------------------------------------------


def _openai_reflecting(body: Mapping[str, Any]) -> bool:
    return body.get("tool_choice") == "none" or not body.get("tools")


def _openai_message(answer: _Answer) -> dict[str, Any]:
    if answer.calls:
        return {"role": "assistant", "content": None, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in answer.calls]}
    return {"role": "assistant", "content": answer.text}


def _openai_usage(answer: _Answer) -> dict[str, int]:
    completion = _completion_tokens(answer)
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": completion,
            "total_tokens": answer.prompt_tokens + completion}


def _openai_whole(answer: _Answer, model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": _openai_message(answer),
                                         "finish_reason": answer.finish,
                                         "logprobs": None}],
            "usage": _openai_usage(answer)}


async def _openai_stream(answer: _Answer, model: str, usage: bool) -> AsyncIterator[str]:
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}

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
            yield chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                         "function": {"name": call.name, "arguments": ""}}]})
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


def _anthropic_reflecting(body: Mapping[str, Any]) -> bool:
    choice = body.get("tool_choice")
    return (isinstance(choice, dict) and choice.get("type") == "none") or not body.get("tools")


def _tool_input(arguments: str) -> Any:
    """A call's input as Anthropic carries it: the parsed JSON, or the text itself when it is not JSON."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _anthropic_blocks(answer: _Answer) -> list[dict[str, Any]]:
    if answer.calls:
        return [{"type": "tool_use", "id": c.id, "name": c.name, "input": _tool_input(c.arguments)}
                for c in answer.calls]
    return [{"type": "text", "text": answer.text or ""}]


def _anthropic_whole(answer: _Answer, model: str) -> dict[str, Any]:
    return {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant", "model": model,
            "content": _anthropic_blocks(answer), "stop_reason": _STOP[answer.finish],
            "stop_sequence": None,
            "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": _completion_tokens(answer)}}


async def _anthropic_stream(answer: _Answer, model: str) -> AsyncIterator[str]:
    message = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant", "model": model,
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": 0}}
    yield _sse({"type": "message_start", "message": message}, "message_start")
    if answer.calls:
        await asyncio.sleep(answer.delay_s)
        for i, call in enumerate(answer.calls):
            yield _sse({"type": "content_block_start", "index": i,
                        "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}},
                       "content_block_start")
            for piece in _pieces(call.arguments):
                yield _sse({"type": "content_block_delta", "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": piece}}, "content_block_delta")
            yield _sse({"type": "content_block_stop", "index": i}, "content_block_stop")
    else:
        yield _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                   "content_block_start")
        words = _words(answer.text or "")
        for word in words:
            await asyncio.sleep(answer.delay_s / len(words))
            yield _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
                       "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    yield _sse({"type": "message_delta", "delta": {"stop_reason": _STOP[answer.finish],
                                                    "stop_sequence": None},
                "usage": {"output_tokens": _completion_tokens(answer)}}, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


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
        self.served: Counter[str] = Counter()
        """Requests answered, by kind: `openai`/`anthropic`, `streamed`, `tool_calls` (calls sent), `reflections`,
        `json_schema` (answers bound to a schema), `cut` (streams the client left before their end)."""

    @property
    def port(self) -> int:
        self._start()
        assert self._port is not None
        return self._port

    def register(self, model: ScriptedModel, who: str) -> str:
        """A token for one script's role (its cursor); its address is `url(token)`."""
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
            config = uvicorn.Config(self._app(), log_config=None, log_level="warning", access_log=False,
                                    lifespan="off", timeout_graceful_shutdown=1)
            self._server = uvicorn.Server(config)
            self._thread = threading.Thread(target=asyncio.run, args=(self._server.serve([sock]),),
                                            name="parley-replay", daemon=True)
            self._thread.start()

    def _app(self) -> Starlette:
        return Starlette(routes=[
            Route("/r/{token}/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/r/{token}/v1/messages", self._messages, methods=["POST"]),
            Route("/r/{token}/v1/models", self._models, methods=["GET"]),
        ])

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
                self.served["cut"] += 1

    def _stream(self, chunks: AsyncIterator[str]) -> Response:
        return StreamingResponse(self._counted(chunks), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    async def _chat(self, request: Request) -> Response:
        try:
            route, body = await self._body_of(request)
            messages = body["messages"]
            _check_openai(messages)
            results = _tool_results_openai(messages)
            reflecting = _openai_reflecting(body) and results is not None
            cap = _reply_cap(body, "max_completion_tokens", "max_tokens")
            answer = _capped(_as_schema(_answer(route, messages, results, reflecting), _schema_field(body)), cap)
        except BadRequest as exc:
            self._failed(request, exc)
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error",
                                           "param": None, "code": None}}, status_code=400)
        self._count("openai", body, answer, reflecting)
        model = str(body.get("model") or "scripted")
        if body.get("stream"):
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return self._stream(_openai_stream(answer, model, usage))
        await asyncio.sleep(answer.delay_s)
        return JSONResponse(_openai_whole(answer, model))

    async def _messages(self, request: Request) -> Response:
        try:
            route, body = await self._body_of(request)
            messages = body["messages"]
            _check_anthropic(messages)
            results = _tool_results_anthropic(messages)
            reflecting = _anthropic_reflecting(body) and results is not None
            cap = _reply_cap(body, "max_tokens")
            answer = _capped(_answer(route, messages, results, reflecting, body.get("system")), cap)
        except BadRequest as exc:
            self._failed(request, exc)
            return JSONResponse({"type": "error", "error": {"type": "invalid_request_error",
                                                            "message": str(exc)}}, status_code=400)
        self._count("anthropic", body, answer, reflecting)
        model = str(body.get("model") or "scripted")
        if body.get("stream"):
            return self._stream(_anthropic_stream(answer, model))
        await asyncio.sleep(answer.delay_s)
        return JSONResponse(_anthropic_whole(answer, model))

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model", "created": 0,
                                                         "owned_by": "parley"}]})

    def _count(self, api: str, body: Mapping[str, Any], answer: _Answer, reflected: bool) -> None:
        self.served.update({api: 1, "streamed": int(bool(body.get("stream"))), "tool_calls": len(answer.calls),
                            "reflections": int(reflected), "json_schema": int(_schema_field(body) is not None)})

    def stop(self) -> None:
        """Stop the server thread (tests; the process's own exit stops the daemon thread otherwise)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = self._port = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            with contextlib.suppress(RuntimeError):
                thread.join(timeout=5)


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
    from ._backends import _GENERIC_INFO

    server = replay_server()
    token = server.register(model, who)
    if api == "anthropic":
        import anthropic

        return _replayed("anthropic")(
            token, model="scripted", base_url=server.anthropic_url(token), api_key="replay", model_info=_GENERIC_INFO,
            max_tokens=2048, max_retries=0, http_client=anthropic.DefaultAsyncHttpxClient(verify=_tls()),
        ), token
    import openai

    return _replayed("openai")(
        token, model="scripted", base_url=server.openai_url(token), api_key="replay", model_info=_GENERIC_INFO,
        max_retries=0, http_client=openai.DefaultAsyncHttpxClient(verify=_tls()),
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
