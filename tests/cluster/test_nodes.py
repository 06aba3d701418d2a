"""Two processes of a cluster, as two nodes in one test (each its own PostgreSQL connections and Redis client):
a run owned by one is watched live on the other, and commands typed there reach it."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from parley import Conversation
from parley.cluster import Bus, Command, Node, Relay, RemoteRun
from parley.events import (
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    ChunkEvent,
    Event,
    FileEvent,
    HumanMessageEvent,
    MessageEvent,
    RunResult,
    RunStartedEvent,
)
from parley.store import Store

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "teams" / "customer-support.yaml"
SCRIPT = ROOT / "tests" / "ui" / "scripts" / "support.yaml"
BOUND_S = 60.0
"""How long a wait for something the run must do may take at most (a busy machine)."""


@pytest.fixture
async def nodes(pg_database: str, redis_url: str, prefix: str) -> AsyncIterator[tuple[Node, Node]]:
    made: list[Node] = []
    for name in ("node-a", "node-b"):
        store = await Store.open(pg_database)
        made.append(Node(store, await Bus.connect(redis_url, prefix=prefix), ttl_s=5.0, name=name))
    yield made[0], made[1]
    for node in made:
        await node.close()
        await node.store.close()


async def _until(events: AsyncIterator[Event], wanted: type[Event], seen: list[Event]) -> Event:
    async def scan() -> Event:
        async for event in events:
            seen.append(event)
            if isinstance(event, wanted):
                return event
        raise AssertionError(f"the run ended before a {wanted.__name__}: {[e.type for e in seen]}")

    return await asyncio.wait_for(scan(), BOUND_S)


async def test_a_run_owned_by_one_node_is_watched_and_steered_from_another(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    conv = Conversation(SUPPORT, model=f"scripted:{SCRIPT}")
    tid = await conv.save_to(a.store, "alice", "Refund order 1042")
    conv, run = await a.say(conv, "Order 1042 arrived broken, I want my money back", "alice")
    assert not isinstance(run, RemoteRun) and tid in a.relays

    # On the other node the conversation is live elsewhere: opening it attaches to that run, starts none.
    assert await b.live_elsewhere(tid) and not await a.live_elsewhere(tid)
    there = await Conversation.resume(b.store, tid)
    watched = await b.watch(there, "alice")
    seen: list[Event] = []
    events = aiter(watched)
    request = await _until(events, ApprovalRequestEvent, seen)
    assert isinstance(request, ApprovalRequestEvent) and request.name == "issue_refund"
    assert [e.request_id for e in watched.pending_approvals] == [request.request_id]

    # Typed on node B: a message that joins the next turn, and the approval; both reach the run on node A.
    watched.say("Please hurry, the customer is waiting", author="bob")
    watched.approve(request.request_id, actor="bob")
    decision = await _until(events, ApprovalDecisionEvent, seen)
    assert isinstance(decision, ApprovalDecisionEvent) and decision.approved and decision.actor == "bob"
    joined = await _until(events, HumanMessageEvent, seen)
    assert isinstance(joined, HumanMessageEvent)
    assert (joined.content, joined.author, joined.mode) == (
        "Please hurry, the customer is waiting",
        "bob",
        "say",
    )
    task = next(e for e in [*watched.earlier, *seen] if isinstance(e, HumanMessageEvent))  # who started it
    assert (task.mode, task.author) == ("task", "alice")

    # Stop from node B ends the run on node A; B sees its result.
    watched.stop()
    result = await _until(events, RunResult, seen)
    assert isinstance(result, RunResult) and result.stop_reason == "stopped"
    assert (await run.wait()).stop_reason == "stopped"

    # Exactly one run executed: node A's. B showed what A stored, in order, and made no model call of its own.
    stored = await a.store.load_events(tid)
    assert [e.type for e in stored].count("run_started") == 1
    shown = [e.model_dump() for e in seen if not isinstance(e, ChunkEvent)]  # streamed text is never stored
    kept = [e.model_dump() for e in stored]
    assert shown == kept[kept.index(shown[0]) :][: len(shown)]
    assert there.meter.calls == [] and len(conv.meter.calls) >= 3
    assert b.relays == {}
    assert any(isinstance(e, ChunkEvent) for e in seen)  # and its text streamed live on B as it was written


async def test_a_stop_meant_for_a_run_that_ended_does_not_stop_the_next_one(
    nodes: tuple[Node, Node], two_runs: Path
) -> None:
    a, b = nodes
    conv = Conversation("content-studio", model=f"scripted:{two_runs}")
    tid = await conv.save_to(a.store, "alice", "Churn")
    conv, first = await a.say(conv, "Write about churn", "alice")
    assert (await asyncio.wait_for(first.wait(), BOUND_S)).stop_reason == "stop_text"

    async def let_go() -> None:  # node A has no run left: it lets the conversation go, as the store says
        while await a.leases.holder(tid) is not None:  # noqa: ASYNC110  # a row in PostgreSQL: no event to await
            await asyncio.sleep(0.05)

    await asyncio.wait_for(let_go(), BOUND_S)
    # Bob's page still showed run 1 and he pressed Stop as it ended: the command waits in the queue, unread.
    await b.bus.send(tid, Command(kind="stop", actor="bob", run=first.number))
    conv, second = await a.say(conv, "Now about retention", "alice")
    result = await asyncio.wait_for(second.wait(), BOUND_S)
    assert (second.number, result.stop_reason) == (2, "stop_text")  # run 2 went to its end


async def test_a_message_sent_from_another_node_as_the_run_ends_starts_the_next_run(
    nodes: tuple[Node, Node], two_runs: Path
) -> None:
    """Bob's message reaches the conversation while Alice's node lets it go: it is not left waiting in the queue,
    it starts the next run (on whichever node then owns the conversation)."""
    a, b = nodes
    conv = Conversation("content-studio", model=f"scripted:{two_runs}")
    tid = await conv.save_to(a.store, "alice", "Churn")
    conv, first = await a.say(conv, "Write about churn", "alice")
    await asyncio.wait_for(first.wait(), BOUND_S)
    there = await Conversation.resume(b.store, tid)
    _, second = await b.say(there, "Now about retention", "bob")
    result = await asyncio.wait_for(second.wait(), BOUND_S)
    assert result.stop_reason == "stop_text"
    said = [e for e in await a.store.load_events(tid) if isinstance(e, MessageEvent)]
    assert [e.content for e in said][3:] == ["Notes 2.", "Draft 2.", "Good 2. APPROVE"]
    assert await b.bus.pending(tid) == 0  # nothing left in the queue


async def _let_go(node: Node, tid: str) -> None:
    """Until `node` no longer owns `tid`, as the store says."""

    async def released() -> None:
        while tid in node.relays or await node.leases.holder(tid) is not None:  # noqa: ASYNC110  # a row in PostgreSQL
            await asyncio.sleep(0.05)

    await asyncio.wait_for(released(), BOUND_S)


async def test_a_node_keeps_no_lock_for_a_conversation_it_is_done_with(
    nodes: tuple[Node, Node], two_runs: Path
) -> None:
    a, b = nodes
    conv = Conversation("content-studio", model=f"scripted:{two_runs}")
    tid = await conv.save_to(a.store, "alice", "Churn")
    conv, first = await a.say(conv, "Write about churn", "alice")
    there = await Conversation.resume(b.store, tid)
    _, sent = await b.say(there, "Mention retention too", "bob")  # to A's run, from B
    assert isinstance(sent, RemoteRun)
    await asyncio.wait_for(first.wait(), BOUND_S)
    await _let_go(a, tid)
    assert await b.carry_on(tid) is None  # nothing left unfinished
    assert (a._locks, b._locks) == ({}, {})


async def test_a_watcher_shows_from_the_store_what_redis_lost_in_order(nodes: tuple[Node, Node]) -> None:
    """The owner's events reach Redis with gaps (a trimmed stream, a restart) and its last one never does: the
    watcher shows every event once, in the store's order, and the run's end."""
    a, b = nodes
    b.bus.block_s = 0.2  # a watcher of a quiet run looks at the store this often
    conv = Conversation("content-studio", model=f"scripted:{SCRIPT}")
    tid = await conv.save_to(a.store, "alice", "Churn")
    roles = ["researcher", "writer", "editor"]
    started = RunStartedEvent(team="content-studio", model="scripted", pattern="round_robin", roles=roles)
    await a.store.append_event(tid, started.type, started.model_dump(mode="json"))
    watched = await b.watch(await Conversation.resume(b.store, tid), "bob")
    said = [MessageEvent(source=role, content=f"{role} {n}") for n, role in enumerate(roles * 2)]
    ended = RunResult(stop_reason="stop_text", turns=6, prompt_tokens=0, completion_tokens=0, cost_usd=None)
    events = aiter(watched)
    for n, event in enumerate([*said, ended]):
        seq = await a.store.append_event(tid, event.type, event.model_dump(mode="json"))
        if n in (0, 3, 4):  # what Redis kept
            await a.bus.publish(tid, event.model_dump(mode="json"), seq)

    async def every() -> list[Event]:
        return [e async for e in events]

    shown = await asyncio.wait_for(every(), BOUND_S)
    assert [e.content for e in shown[:-1]] == [e.content for e in said]
    assert isinstance(shown[-1], RunResult) and watched.result is not None
    await watched.close()


async def test_a_view_of_a_quiet_run_ends_on_every_node_as_soon_as_its_member_is_revoked(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    conv = Conversation(SUPPORT, model=f"scripted:{SCRIPT}")
    tid = await conv.save_to(a.store, "alice", "Refund order 1042")
    bob = f"bob-{uuid.uuid4().hex[:8]}"  # the database is shared by the module's tests
    await a.store.create_user(bob, "bob-password-12")
    await a.store.share(tid, bob, "read", actor="alice")
    pages = [asyncio.ensure_future(asyncio.Event().wait()) for _ in range(2)]  # bob's pages: nothing comes
    ending = [asyncio.ensure_future(n.end_if_revoked(tid, bob, p)) for n, p in zip(nodes, pages, strict=True)]
    ends = asyncio.ensure_future(asyncio.gather(*ending))

    async def listening() -> None:
        while not all((tid, bob) in n._revoked for n in nodes):  # noqa: ASYNC110  # no event says so
            await asyncio.sleep(0.01)

    await asyncio.wait_for(listening(), BOUND_S)
    await a.revoke(tid, bob)  # not so in the store: someone else's word, the pages go on
    await b.revoke(tid, "carol")
    done, _ = await asyncio.wait([ends], timeout=0.5)  # a while to watch nothing happen
    assert not done and not any(p.done() for p in pages)
    assert await a.store.unshare(tid, bob, actor="alice")
    await a.revoke(tid, bob)
    assert await asyncio.wait_for(ends, BOUND_S) == [True, True]
    assert all(p.cancelled() for p in pages)
    assert a._revoked == {} and b._revoked == {}


async def test_a_watcher_finds_a_tool_s_file_in_its_own_data_folder_never_where_the_bus_says(
    nodes: tuple[Node, Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever can write to Redis could name any file of the web process: a file event is read by its name in the
    conversation's workspace here, and one whose name leads out of it is not shown."""
    a, b = nodes
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    conv = Conversation("content-studio", model=f"scripted:{SCRIPT}")
    tid = await conv.save_to(a.store, "alice", "Churn")
    started = RunStartedEvent(
        team="content-studio", model="scripted", pattern="round_robin", roles=["writer"]
    )
    await a.store.append_event(tid, started.type, started.model_dump(mode="json"))
    watched = await b.watch(await Conversation.resume(b.store, tid), "bob")
    for name in ("post.md", "../other/post.md", f"../../workspaces/{uuid.uuid4().hex}/x.md"):
        written = FileEvent(
            source="writer", name=name, path="/etc/passwd", mime="text/plain", size=1, tool="t"
        )
        await a.bus.publish(tid, written.model_dump(mode="json"), None)
    ended = RunResult(stop_reason="stop_text", turns=1, prompt_tokens=0, completion_tokens=0, cost_usd=None)
    await a.bus.publish(tid, ended.model_dump(mode="json"), 2)

    async def every() -> list[Event]:
        return [e async for e in watched]

    files = [e for e in await asyncio.wait_for(every(), BOUND_S) if isinstance(e, FileEvent)]
    workspace = (tmp_path / "data" / "workspaces" / tid).resolve()
    assert [(e.name, e.path) for e in files] == [("post.md", str(workspace / "post.md"))]


async def test_an_owner_that_lost_the_conversation_takes_none_of_its_commands_any_more(
    nodes: tuple[Node, Node], two_runs: Path
) -> None:
    """A stalled owner whose lease ran out must leave the commands sent since to the new owner."""
    a, b = nodes
    conv = Conversation("content-studio", model=f"scripted:{two_runs}")
    tid = await conv.save_to(a.store, "alice", "Churn")
    lease = await a.leases.acquire(tid)
    assert lease is not None
    relay = Relay(a, conv, lease)
    relay.begin()
    assert relay.reader is not None
    relay._lost()  # another process took the conversation over
    await asyncio.wait_for(asyncio.gather(relay.reader, return_exceptions=True), BOUND_S)
    await b.bus.send(tid, Command(kind="say", actor="bob", text="Also cover retention"))
    assert await b.bus.pending(tid) == 1, "left for the new owner"
    assert not conv.running
    await relay.close()


async def test_a_view_ends_too_when_its_member_is_revoked_by_a_process_that_told_no_node(
    nodes: tuple[Node, Node],
) -> None:
    a, _ = nodes
    conv = Conversation(SUPPORT, model=f"scripted:{SCRIPT}")
    tid = await conv.save_to(a.store, "alice", "Refund order 1042")
    bob = f"bob-{uuid.uuid4().hex[:8]}"  # the database is shared by the module's tests
    await a.store.create_user(bob, "bob-password-12")
    await a.store.share(tid, bob, "read", actor="alice")
    page = asyncio.ensure_future(asyncio.Event().wait())
    ending = asyncio.ensure_future(a.end_if_revoked(tid, bob, page, recheck_s=0.1))
    assert await a.store.unshare(tid, bob, actor="alice")  # `parley share --revoke` outside the cluster
    assert await asyncio.wait_for(ending, BOUND_S) is True
    assert page.cancelled()


async def test_parley_share_revoke_ends_a_members_view_on_every_node_at_once(
    nodes: tuple[Node, Node], cluster_env: dict[str, str]
) -> None:
    """`parley share THREAD USER --revoke` is a process outside the cluster: it tells the nodes through Redis, so a
    member's page of a quiet run ends now, not at the store's next check (made long here to tell them apart)."""
    a, b = nodes
    conv = Conversation(SUPPORT, model=f"scripted:{SCRIPT}")
    tid = await conv.save_to(a.store, "alice", "Refund order 1042")
    bob = f"bob-{uuid.uuid4().hex[:8]}"
    await a.store.create_user(bob, "bob-password-12")
    await a.store.share(tid, bob, "write", actor="alice")
    page = asyncio.ensure_future(asyncio.Event().wait())  # bob's page of a run that says nothing
    ending = asyncio.ensure_future(b.end_if_revoked(tid, bob, page, recheck_s=3600))

    async def listening() -> None:
        while (tid, bob) not in b._revoked:  # noqa: ASYNC110  # no event says so
            await asyncio.sleep(0.01)

    await asyncio.wait_for(listening(), BOUND_S)
    cli = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "parley"),
        "share",
        tid,
        bob,
        "--revoke",
        "--as",
        "alice",
        env=cluster_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, out.decode()
    assert f"{bob} no longer has conversation {tid}" in out.decode()
    assert await asyncio.wait_for(ending, BOUND_S) is True
    assert page.cancelled()
