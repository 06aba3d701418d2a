"""The HTTP API on two replicas of a cluster (two real HTTP servers over one PostgreSQL and one Redis): a run started
through one is followed, answered and stopped through the other, with httpx as the client."""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from api.conftest import PLAN_SCRIPT, PLANNER
from fastapi import FastAPI

from parley import Conversation
from parley.api import mount
from parley.api._sse import KEEPALIVE_S
from parley.cluster import Bus, Node
from parley.paths import data_dir_path
from parley.store import Store

BOUND_S = 60.0
pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # a cluster shares PostgreSQL
DUO_SLOW = """
roles:
  writer: ["First draft.", "Second draft.", "Third draft."]
  editor: ["Needs work.", "Closer.", "Good. APPROVED"]
delay_s: 2
"""
DUO = """
name: duo
pattern: round_robin
roles:
  - name: writer
    prompt: You write.
  - name: editor
    prompt: You check.
termination: {max_turns: 6, stop_text: APPROVED, stop_from: [editor]}
"""


class Replica:
    """The API served by uvicorn on a port of 127.0.0.1, in a thread with its own loop, store and cluster node."""

    def __init__(self, name: str, db: str, redis_url: str, prefix: str) -> None:
        self.nodes: list[Node] = []
        opened: list[Store] = []
        locks: list[asyncio.Lock] = []  # made on the server's own loop, at its first request

        async def get_store() -> Store:
            locks[:] = locks or [asyncio.Lock()]
            async with locks[0]:
                if not opened:
                    opened.append(await Store.open(db))
            return opened[0]

        async def get_node() -> Node:
            store = await get_store()
            async with locks[0]:
                if not self.nodes:
                    bus = await Bus.connect(redis_url, prefix=prefix)
                    node = Node(store, bus, ttl_s=5.0, name=name)
                    node.start_sweeping()
                    self.nodes.append(node)
            return self.nodes[0]

        app = FastAPI()
        hub = mount(app, get_store, get_node)
        self.hub = hub

        @app.on_event("shutdown")
        async def _closed() -> None:
            await hub.close()
            for node in self.nodes:
                await node.close()
            for store in opened:
                await store.close()

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def cluster(
    db_url: str, redis_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Replica, Replica, dict[str, str]]]:
    scripts, teams = tmp_path / "scripts", tmp_path / "teams"
    scripts.mkdir()
    teams.mkdir()
    (scripts / "plan.yaml").write_text(textwrap.dedent(PLAN_SCRIPT), encoding="utf-8")
    (scripts / "duo.yaml").write_text(textwrap.dedent(DUO_SLOW), encoding="utf-8")
    (teams / "planner.yaml").write_text(textwrap.dedent(PLANNER).lstrip(), encoding="utf-8")
    (teams / "duo.yaml").write_text(textwrap.dedent(DUO).lstrip(), encoding="utf-8")
    monkeypatch.setenv("PARLEY_SCRIPTS", str(scripts))
    monkeypatch.setenv("PARLEY_TEAMS", str(teams))

    async def users() -> dict[str, str]:
        async with await Store.open(db_url) as store:
            await store.create_user("alice", "alice-password-1")
            return {"alice": (await store.create_token("alice", "tests"))[1]}

    tokens = _in_thread(users)  # the test's own loop may be running: the users are made on one of their own
    a, b = (
        Replica("replica-a", db_url, redis_url, prefix),
        Replica("replica-b", db_url, redis_url, prefix),
    )
    yield a, b, {"authorization": f"Bearer {tokens['alice']}"}
    a.stop()
    b.stop()


def _in_thread(make: Callable[[], object]) -> dict[str, str]:
    out: list[dict[str, str]] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(make())))  # type: ignore[arg-type]
    thread.start()
    thread.join()
    return out[0]


async def _events(
    client: httpx.AsyncClient, url: str, auth: dict[str, str]
) -> AsyncGenerator[dict[str, object]]:
    """The conversation's events as the server streams them (Server-Sent Events), live."""
    async with client.stream("GET", url, headers=auth, params={"follow": "true"}) as response:
        assert response.status_code == 200, await response.aread()
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind:
                yield json.loads(line.removeprefix("data: "))


async def _until(events: AsyncIterator[dict[str, object]], kind: str, seen: list[dict[str, object]]) -> dict:
    async def scan() -> dict:
        async for event in events:
            seen.append(event)
            if event.get("type") == kind:
                return event
        raise AssertionError(f"the stream ended before a {kind}")

    return await asyncio.wait_for(scan(), BOUND_S)


async def _started_on_a_followed_on_b(
    client: httpx.AsyncClient,
    cluster: tuple[Replica, Replica, dict[str, str]],
    team: str,
    model: str,
    task: str,
) -> tuple[str, AsyncGenerator[dict[str, object]]]:
    """A conversation created with its task through replica A, and its events as replica B streams them."""
    a, b, auth = cluster
    made = await client.post(
        f"{a.url}/conversations", headers=auth, json={"team": team, "model": model, "message": task}
    )
    assert made.status_code == 201, made.text
    tid = made.json()["id"]
    return tid, _events(client, f"{b.url}/conversations/{tid}/events", auth)


async def test_a_run_started_on_one_replica_is_answered_and_followed_through_the_other(
    cluster: tuple[Replica, Replica, dict[str, str]],
) -> None:
    _, b, auth = cluster
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        tid, events = await _started_on_a_followed_on_b(
            client, cluster, "planner", "scripted:plan.yaml", "Plan the launch"
        )
        seen: list[dict[str, object]] = []
        question = await _until(events, "question", seen)  # B's stream follows the run A drives

        answered = await client.post(
            f"{b.url}/conversations/{tid}/questions/{question['question_id']}",
            headers=auth,
            json={"text": "Europe"},
        )
        assert answered.status_code == 200, answered.text
        answer = await _until(events, "answer", seen)
        assert (answer["content"], answer["actor"]) == ("Europe", "alice")
        result = await _until(events, "result", seen)
        assert result["stop_reason"] != "error", result
        await events.aclose()

        # One run, on A: B drove nothing, and refuses a decision nobody waits for.
        assert [e["type"] for e in seen].count("run_started") == 1
        assert b.nodes and b.nodes[0].relays == {}
        again = await client.post(
            f"{b.url}/conversations/{tid}/questions/{question['question_id']}",
            headers=auth,
            json={"text": "Asia"},
        )
        assert again.status_code == 409, again.text  # nothing is waiting any more


async def test_a_message_and_stop_sent_through_the_other_replica_reach_the_run(
    cluster: tuple[Replica, Replica, dict[str, str]],
) -> None:
    _, b, auth = cluster
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        tid, events = await _started_on_a_followed_on_b(
            client, cluster, "duo", "scripted:duo.yaml", "Write a slogan"
        )
        seen: list[dict[str, object]] = []
        await _until(events, "message", seen)  # the writer's first draft, on B
        said = await client.post(
            f"{b.url}/conversations/{tid}/messages", headers=auth, json={"text": "Shorter, please"}
        )
        assert said.status_code == 202, said.text
        assert said.json()["running"] is True
        joined = await _until(events, "human_message", seen)
        assert (joined["content"], joined["author"], joined["mode"]) == ("Shorter, please", "alice", "say")
        stopped = await client.post(f"{b.url}/conversations/{tid}/stop", headers=auth)
        assert stopped.status_code == 200 and stopped.json() == {"stopped": True}, stopped.text
        result = await _until(events, "result", seen)
        assert result["stop_reason"] == "stopped"
        await events.aclose()
        assert [e["type"] for e in seen].count("run_started") == 1


class _Copies:
    """Counts the copies of one conversation this process builds from the store and has not closed (each holds
    its team's model clients and MCP sessions), both replicas' and the owner's included."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tid: str) -> None:
        self.open: dict[int, Conversation] = {}
        attach, close = Conversation.attach, Conversation.close

        def attached(conv: Conversation, store: Store, thread_id: str) -> None:
            attach(conv, store, thread_id)
            if thread_id == tid:
                self.open[id(conv)] = conv

        async def closed(conv: Conversation) -> None:
            self.open.pop(id(conv), None)
            await close(conv)

        monkeypatch.setattr(Conversation, "attach", attached)
        monkeypatch.setattr(Conversation, "close", closed)


async def test_commands_through_the_other_replica_leave_no_copy_behind_there(
    cluster: tuple[Replica, Replica, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, b, auth = cluster
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        tid, events = await _started_on_a_followed_on_b(
            client, cluster, "planner", "scripted:plan.yaml", "Plan the launch"
        )
        question = await _until(events, "question", [])
        copies = _Copies(monkeypatch, tid)
        url = f"{b.url}/conversations/{tid}/questions"
        counts = []
        for n in range(12):  # each a command through B for the run A drives: refused, nothing waits on it
            refused = await client.post(f"{url}/not-asked-{n}", headers=auth, json={"text": "Asia"})
            assert refused.status_code == 404, refused.text
            counts.append(len(copies.open))
        assert counts == [1] * len(counts), f"copies B built and kept, after each command: {counts}"
        answered = await client.post(
            f"{url}/{question['question_id']}", headers=auth, json={"text": "Europe"}
        )
        assert answered.status_code == 200, answered.text
        assert (await _until(events, "result", []))["stop_reason"] != "error"
        await events.aclose()
        assert len(b.hub._copies) <= 1


@pytest.fixture
def bob(db_url: str, cluster: tuple[Replica, Replica, dict[str, str]]) -> dict[str, str]:
    """Bob's API sign-in (alice may share her conversations with him)."""

    async def user() -> dict[str, str]:
        async with await Store.open(db_url) as store:
            await store.create_user("bob", "bob-password-12")
            return {"bob": (await store.create_token("bob", "tests"))[1]}

    return {"authorization": f"Bearer {_in_thread(user)['bob']}"}


async def test_a_member_s_stream_ends_at_once_when_the_owner_revokes_it_while_the_run_is_quiet(
    cluster: tuple[Replica, Replica, dict[str, str]],
    bob: dict[str, str],
    db_url: str,
    redis_url: str,
    prefix: str,
) -> None:
    _, b, _ = cluster
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        tid, events = await _started_on_a_followed_on_b(
            client, cluster, "planner", "scripted:plan.yaml", "Plan the launch"
        )
        await _until(events, "question", [])  # the run waits for alice's answer: nothing more comes
        await events.aclose()
        async with await Store.open(db_url) as store:
            assert await store.share(tid, "bob", "read", actor="alice")
            watching = _events(client, f"{b.url}/conversations/{tid}/events", bob)
            await _until(watching, "question", [])  # bob watches the quiet run through B
            assert await store.unshare(tid, "bob", actor="alice")
        bus = await Bus.connect(redis_url, prefix=prefix)  # the process that revoked it says so
        node = Node(await Store.open(db_url), bus, name="revoker")
        try:
            await node.revoke(tid, "bob")
        finally:
            await node.close()
            await node.store.close()
        rest = [e async for e in _bounded(watching, KEEPALIVE_S / 3)]
        assert rest == [], "the stream ended without showing more"
        left = await client.get(f"{b.url}/conversations/{tid}/events", headers=bob)
        assert left.status_code == 403


async def _bounded(
    events: AsyncIterator[dict[str, object]], within_s: float
) -> AsyncIterator[dict[str, object]]:
    """`events` to their end, which must come within `within_s` (long before the stream would look again)."""
    async with asyncio.timeout(within_s):
        async for event in events:
            yield event


async def test_a_file_a_tool_wrote_on_one_replica_is_downloaded_through_the_other(
    cluster: tuple[Replica, Replica, dict[str, str]], bob: dict[str, str], tmp_path: Path
) -> None:
    """Both replicas share the data folder (as deployment.md says): a client of either gets the file."""
    _, b, auth = cluster
    text = "# Churn\n\nTrack it monthly.\n"
    writes = {"tool": "write_file", "args": {"path": "drafts/post.md", "content": text}}
    script = {"roles": {"researcher": ["Notes."], "writer": [writes, "Done."], "editor": ["Good. APPROVE"]}}
    (tmp_path / "scripts" / "writes.yaml").write_text(json.dumps(script))  # JSON is YAML
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        tid, events = await _started_on_a_followed_on_b(
            client, cluster, "content-studio", "scripted:writes.yaml", "Write about churn"
        )
        written = await _until(events, "file", [])
        assert written["name"] == "drafts/post.md"
        await _until(events, "result", [])
        await events.aclose()
        files = f"{b.url}/conversations/{tid}/files"
        got = await client.get(f"{files}/drafts/post.md", headers=auth)
        assert got.status_code == 200, got.text
        assert got.text == text and got.headers["content-type"].startswith("application/octet-stream")
        assert (
            "attachment" in got.headers["content-disposition"]
            and "sandbox" in got.headers["content-security-policy"]
        )
        beside = data_dir_path() / "workspaces" / "beside.txt"  # in the data folder, outside this workspace
        beside.write_text("not yours")
        assert (await client.get(f"{files}/%2e%2e/beside.txt", headers=auth)).status_code == 404
        for name in (
            "drafts/nothing.md",
            "%2e%2e/%2e%2e/auth-secret",
            "%2e%2e%2fother",
            "drafts",
            "../../x",
            "a" * 5000,
        ):
            refused = await client.get(f"{files}/{name}", headers=auth)  # "../../x": httpx walks up the URL
            assert refused.status_code in (400, 404), (name, refused.status_code)
        assert (
            await client.get(f"{files}/drafts/post.md", headers=bob)
        ).status_code == 403  # not shared with bob
