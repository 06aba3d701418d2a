"""A loopback HTTP server that records what model clients send and answers with canned replies.

Queue replies with `reply_json`, `reply_sse` or `reply_ndjson`; each request takes the next one.
A request with nothing queued gets HTTP 400 (not retried by the SDKs) so a missing reply fails fast.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    target: str
    """Path and query, as sent."""
    headers: dict[str, str]
    """Header names lower-cased."""
    body: Any
    """Parsed JSON body, or the raw text when it is not JSON."""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)


@dataclass(frozen=True)
class _Reply:
    status: int
    content_type: str
    body: bytes


class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1, port chosen by the OS, serving in a daemon thread."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._replies: deque[_Reply] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def last(self) -> Recorded:
        assert self.requests, "the fake server received no request"
        return self.requests[-1]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._replies.clear()

    def reply_json(self, body: Any, status: int = 200) -> None:
        self._queue(_Reply(status, "application/json", json.dumps(body).encode()))

    def reply_sse(self, events: list[Any], *, done: bool = True) -> None:
        """Server-sent events, one `data: {json}` per event, then `data: [DONE]`."""
        lines = [f"data: {json.dumps(e)}\n\n" for e in events]
        if done:
            lines.append("data: [DONE]\n\n")
        self._queue(_Reply(200, "text/event-stream", "".join(lines).encode()))

    def reply_ndjson(self, lines: list[Any]) -> None:
        """Newline-delimited JSON, as Ollama streams."""
        text = "".join(json.dumps(line) + "\n" for line in lines)
        self._queue(_Reply(200, "application/x-ndjson", text.encode()))

    def _queue(self, reply: _Reply) -> None:
        with self._lock:
            self._replies.append(reply)

    def _take(self, recorded: Recorded) -> _Reply:
        with self._lock:
            self.requests.append(recorded)
            if self._replies:
                return self._replies.popleft()
        body = {"error": {"message": f"fake server: no reply queued for {recorded.method} {recorded.target}"}}
        return _Reply(400, "application/json", json.dumps(body).encode())

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = server._take(Recorded(self.command, self.path, headers, body))
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _serve

        return Handler

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def serve() -> Iterator[FakeServer]:
    """Generator for a pytest fixture: a running server, stopped afterwards."""
    server = FakeServer().start()
    try:
        yield server
    finally:
        server.stop()
