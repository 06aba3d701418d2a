"""Secrets stay secret: the model API key, Chainlit's signing secret and users' passwords never reach the
stored conversation, the database file, the server log, or anything the page is sent.

The server runs a real OpenAI backend (a loopback stand-in answers it), so the key is really used.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _websec import ChatSocket, cookie_of, login, server_log
from chat_started import evaluate
from fakeserver import FakeServer
from ui.conftest import Server, run_async

KEY = "sk-parley-" + secrets.token_hex(20)
AUTH_SECRET = secrets.token_urlsafe(48)
PASSWORD = "alice-" + secrets.token_hex(8)
SECRETS = {"OPENAI_API_KEY": KEY, "CHAINLIT_AUTH_SECRET": AUTH_SECRET, "alice's password": PASSWORD}
REPLIES = {"researcher": "Churn is costly.", "writer": "Keep customers.", "editor": "Good. APPROVE"}


class KeyedServer(Server):
    """A `parley ui` whose environment holds real-looking secrets and an OpenAI backend at `model_url`."""

    def __init__(self, data_dir: Path, model_url: str) -> None:
        super().__init__(data_dir, "studio.yaml")
        self.model_url = model_url

    def env(self) -> dict[str, str]:
        return super().env() | {
            "OPENAI_API_KEY": KEY,
            "CHAINLIT_AUTH_SECRET": AUTH_SECRET,
            "OPENAI_BASE_URL": self.model_url,
            "PARLEY_MODEL": "openai:gpt-4o-mini",
            "CI": "true",  # CI runners set it, and Chainlit's CI mode would swap the key for a placeholder
        }


def _stream(text: str) -> list[dict[str, Any]]:
    base = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
    }
    return [
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}},
    ]


@pytest.fixture(scope="module")
def model() -> Iterator[FakeServer]:
    fake = FakeServer().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def server(model: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = KeyedServer(tmp_path_factory.mktemp("secrets"), model.url + "/v1")
    started.parley("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    yield started.start()
    started.stop()


def _leaks(text: str) -> list[str]:
    """Which secrets `text` holds, in clear or JSON-escaped."""
    return [name for name, value in SECRETS.items() if value in text or json.dumps(value)[1:-1] in text]


def _stored(server: Server, tid: str) -> str:
    """Everything the store holds about the thread: events, checkpoints, audit rows."""

    async def read(store: Any) -> str:
        checkpoint = await store.latest_checkpoint(tid)
        return json.dumps(
            [
                [r.payload for r in await store.events(tid)],
                checkpoint.state if checkpoint else None,
                [r.detail for r in await store.audit_log()],
                [t.title for t in await store.list_threads("alice")],
            ],
            ensure_ascii=False,
        )

    return server.query(read)


def _database_bytes(server: Server) -> bytes:
    return b"".join(p.read_bytes() for p in server.data_dir.glob("parley.db*"))


def _chat(server: Server, model: FakeServer, task: str) -> tuple[str, list[str]]:
    """Alice runs a task over the socket: (thread id, every text her page was sent)."""
    for role in ("researcher", "writer", "editor"):
        model.reply_sse(_stream(REPLIES[role]))
    alice = login(server, "alice", PASSWORD)

    async def chat() -> tuple[str, list[str]]:
        async with ChatSocket(server, cookie_of(alice)) as tab:
            await tab.run_to_end(task)
            assert tab.thread_id is not None
            return tab.thread_id, [json.dumps(data, ensure_ascii=False) for _, data in tab.received]

    return run_async(chat)


def test_secrets_reach_neither_the_store_nor_the_log_nor_the_socket(
    server: Server, model: FakeServer
) -> None:
    model.reset()
    tid, sent_to_page = _chat(server, model, "Write a note on churn")

    # The key was really in use: every model call carried it, to the model server only.
    assert len(model.requests) == 3
    assert {r.headers.get("authorization") for r in model.requests} == {f"Bearer {KEY}"}
    assert [e["content"] for e in server.events(tid) if e["type"] == "message"] == list(REPLIES.values())

    places = {
        "stored events, checkpoint, audit, titles": _stored(server, tid),
        "the database files": _database_bytes(server).decode("utf-8", "replace"),
        "the server log": server_log(server),
        "the socket messages to the page": "\n".join(sent_to_page),
        "the model server's requests (bodies)": json.dumps([r.body for r in model.requests]),
    }
    leaked = {place: _leaks(text) for place, text in places.items() if _leaks(text)}
    assert leaked == {}


def test_secrets_are_not_on_the_page(server: Server, model: FakeServer, new_page) -> None:
    model.reset()
    tid, _ = _chat(server, model, "Write a note on retention")
    page = new_page()
    bodies: list[str] = []
    frames: list[str] = []
    page.on("response", lambda r: bodies.append(_body(r)))
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))

    page.goto(server.url + "/login")
    page.locator("#email").fill("alice")
    page.locator("#password").fill(PASSWORD)
    page.locator('button[type="submit"]').click()
    page.locator(f"#thread-{tid}").click()  # her conversation, read back from the store
    page.get_by_text("Good. APPROVE").wait_for()
    for path in ("/user", "/project/settings?language=en-US", "/auth/config", f"/project/thread/{tid}"):
        bodies.append(page.request.get(server.url + path).text())

    places = {
        "the page": page.content(),
        "HTTP responses": "\n".join(bodies),
        "socket frames": "\n".join(frames),
        "cookies": json.dumps(page.context.cookies()),
        "page storage": evaluate(
            page, "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
        ),
    }
    # the capture worked (the count of frames varies with timing)
    assert len(frames) >= 6 and len(bodies) > 10
    leaked = {place: _leaks(text) for place, text in places.items() if _leaks(text)}
    assert leaked == {}


def _body(response: Any) -> str:
    try:
        return response.text()
    except Exception:  # a redirect or a streamed body has none to read
        return ""


def test_a_backend_that_echoes_the_key_does_not_leak_it(server: Server, model: FakeServer) -> None:
    model.reset()
    model.reply_json(
        {
            "error": {
                "message": f"Incorrect API key provided: {KEY}.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
        status=401,
    )
    alice = login(server, "alice", PASSWORD)

    async def chat() -> tuple[str, list[str]]:
        async with ChatSocket(server, cookie_of(alice)) as tab:
            await tab.run_to_end("Write a note on pricing")
            assert tab.thread_id is not None
            return tab.thread_id, tab.texts()

    tid, shown = run_async(chat)
    assert any("AuthenticationError" in text for text in shown)  # the error itself is shown
    assert _leaks("\n".join(shown)) == [] and _leaks(_stored(server, tid)) == []
