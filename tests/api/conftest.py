"""The API served in-process (httpx's ASGITransport against the FastAPI app), on a store of its own, with teams and
scripted models of the tests' own; and two users with a token each."""

from __future__ import annotations

import asyncio
import shutil
import socket
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from parley.api import Hub, mount
from parley.store import Store

ROOT = Path(__file__).resolve().parents[2]
DUO = """
name: duo
description: A writer drafts, an editor approves
pattern: round_robin
roles:
  - name: writer
    description: writes the answer
    prompt: You write.
  - name: editor
    description: checks it
    prompt: You check.
termination:
  max_turns: 4
  stop_text: APPROVED
  stop_from: [editor]
"""
DUO_SCRIPT = """
roles:
  writer:
    - "Paris is the capital of France."
    - "Lyon is the third largest city of France."
    - "You are welcome."
  editor:
    - "Correct. APPROVED"
    - "Right, and it is known for its food. APPROVED"
    - "Fine. APPROVED"
"""
PLANNER = """
name: planner
description: Asks before it plans
pattern: round_robin
roles:
  - name: planner
    description: plans
    prompt: You plan.
    tools: [ask_human]
termination:
  max_turns: 1
human:
  default_answer: Assume all regions.
"""
PLAN_SCRIPT = """
roles:
  planner:
    - tool: ask_human
      args: {question: "Which region should the plan cover?"}
    - "Plan for the region given."
"""
LOOP = """
name: critique-loop
description: A writer and a critic who agree only in the second round
pattern: loop
roles:
  - name: writer
    description: writes
    prompt: You write.
  - name: critic
    description: criticises
    prompt: You criticise.
termination:
  max_turns: 10
loop: {until: APPROVE, max_rounds: 1, on_max_rounds: escalate}
"""
LOOP_SCRIPT = """
roles:
  writer: ["draft 1", "draft 2"]
  critic: ["too long", "good. APPROVE"]
"""


@dataclass
class Api:
    client: httpx.AsyncClient
    hub: Hub
    store: Store
    app: FastAPI
    tokens: dict[str, str]

    def auth(self, user: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture
def scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scripts folder (PARLEY_SCRIPTS) with the scripts of the tests' teams (PARLEY_TEAMS) and the support
    desk's refund."""
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "duo.yaml").write_text(textwrap.dedent(DUO_SCRIPT), encoding="utf-8")
    (folder / "loop.yaml").write_text(textwrap.dedent(LOOP_SCRIPT), encoding="utf-8")
    (folder / "plan.yaml").write_text(textwrap.dedent(PLAN_SCRIPT), encoding="utf-8")
    shutil.copy(ROOT / "evals" / "scripts" / "support-refund.yaml", folder / "refund.yaml")
    monkeypatch.setenv("PARLEY_SCRIPTS", str(folder))
    teams = tmp_path / "teams"
    teams.mkdir()
    (teams / "duo.yaml").write_text(textwrap.dedent(DUO).lstrip(), encoding="utf-8")
    (teams / "loop.yaml").write_text(textwrap.dedent(LOOP).lstrip(), encoding="utf-8")
    (teams / "planner.yaml").write_text(textwrap.dedent(PLANNER).lstrip(), encoding="utf-8")
    monkeypatch.setenv("PARLEY_TEAMS", str(teams))
    return folder


@pytest.fixture
async def api(scripts: Path, tmp_path: Path) -> AsyncIterator[Api]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    for name in ("alice", "bob"):
        await store.create_user(name, f"{name}-password")
    tokens = {name: (await store.create_token(name, "tests"))[1] for name in ("alice", "bob")}

    async def get_store() -> Store:
        return store

    app = FastAPI()
    hub = mount(app, get_store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://parley.test", timeout=30) as client:
        yield Api(client, hub, store, app, tokens)
    await hub.close()
    await store.close()


@dataclass
class Served:
    """The API on a real HTTP server (uvicorn, on a port of 127.0.0.1, in a thread of its own)."""

    url: str
    tokens: dict[str, str]
    db: str

    def auth(self, user: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[user]}"}


def _users(db: str) -> dict[str, str]:
    async def make() -> dict[str, str]:
        async with await Store.open(db) as store:
            tokens = {}
            for name in ("alice", "bob"):
                await store.create_user(name, f"{name}-password")
                tokens[name] = (await store.create_token(name, "tests"))[1]
            return tokens

    return asyncio.run(make())


@pytest.fixture
def served(scripts: Path, tmp_path: Path) -> Iterator[Served]:
    db = f"sqlite+aiosqlite:///{tmp_path / 'served.db'}"
    tokens = _users(db)
    opened: list[Store] = []
    lock: list[asyncio.Lock] = []

    async def get_store() -> Store:  # opened on the server's own event loop
        if not lock:
            lock.append(asyncio.Lock())
        async with lock[0]:
            if not opened:
                opened.append(await Store.open(db))
            return opened[0]

    app = FastAPI()
    hub = mount(app, get_store)

    @app.on_event("shutdown")
    async def _closed() -> None:
        await hub.close()
        for store in opened:
            await store.close()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until the server accepts: no waiting for it to start
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}", tokens, db)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the API server did not stop within 30 s"
