"""`parley worker` processes over real PostgreSQL and Redis: a web process that only relays hands a run to a
worker, watches it live, and when the worker is killed mid-run another one carries it on from its checkpoint."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cluster.conftest import TTL_S, Workers

from parley import Conversation
from parley.cluster import Bus, Node, RemoteRun
from parley.events import Event, FileEvent, MessageEvent, RunResult, RunStartedEvent
from parley.store import Store

ROOT = Path(__file__).resolve().parents[2]
PARLEY = str(Path(sys.executable).parent / "parley")
STUDIO = [
    ("researcher", "Research notes: replacing a lost customer costs five to seven times more."),
    ("writer", "Draft one: churn is the quiet leak in a small business's revenue."),
    ("editor", "Open with the cost of a lost customer, then send it back."),
    ("researcher", "Research follow-up: monthly churn above 3% is the usual warning sign."),
    ("writer", "Draft two: track churn monthly and fix the top reason first."),
    ("editor", "Clear and accurate. APPROVE"),
]
"""content-studio's conversation (researcher, writer, editor in turn); the editor's APPROVE ends it."""
BOUND_S = 120.0
"""How long the whole conversation may take at most, takeover included (a busy machine)."""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    replies: dict[str, list[str]] = {}
    for who, text in STUDIO:
        replies.setdefault(who, []).append(text)
    path = tmp_path / "studio.yaml"  # JSON is YAML
    path.write_text(json.dumps({"roles": replies, "delay_s": 1.0}))
    return path


@pytest.fixture
async def web(pg_database: str, redis_url: str, prefix: str) -> AsyncIterator[Node]:
    """A web process's node: it runs nothing itself, workers do."""
    store = await Store.open(pg_database)
    node = Node(store, await Bus.connect(redis_url, prefix=prefix), ttl_s=TTL_S, name="web", runs_here=False)
    yield node
    await node.close()
    await store.close()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
async def test_a_worker_killed_or_stopped_mid_run_is_replaced_with_no_finished_turn_lost(
    web: Node, workers: Workers, script: Path, how: signal.Signals
) -> None:
    """Killed: its lease runs out and another worker carries the run on. Stopped (SIGTERM, a deploy): it hands the
    run on at once. Either way every finished turn is kept once."""
    first = workers()
    conv = Conversation("content-studio", model=f"scripted:{script}")
    tid = await conv.save_to(web.store, "alice", "Churn")
    _, run = await web.say(conv, "Write about churn", "alice")
    assert isinstance(run, RemoteRun)  # the web process only relays: a worker runs it
    seen: list[Event] = []

    async def watch() -> RunResult:
        async for event in run:
            seen.append(event)
            if isinstance(event, MessageEvent) and len([e for e in seen if isinstance(e, MessageEvent)]) == 2:
                first.send_signal(how)  # mid-run, as the third reply streams
                code = first.wait(timeout=60)
                assert how == signal.SIGKILL or code == 0  # a stopped worker ends cleanly
                workers()  # a second worker comes up; the first's lease runs out
        assert run.result is not None
        return run.result

    result = await asyncio.wait_for(watch(), BOUND_S)
    assert result.stop_reason == "stop_text" and result.detail == "editor said APPROVE", result

    # Every finished turn once, in order: the ones before the kill kept, the rest said by the second worker.
    stored = await web.store.load_events(tid)
    said = [(e.source, e.content) for e in stored if isinstance(e, MessageEvent)]
    assert said == STUDIO
    assert sum(isinstance(e, RunStartedEvent) for e in stored) == 2  # the run, and its carrying on
    assert [(e.source, e.content) for e in seen if isinstance(e, MessageEvent)] == STUDIO  # all shown live
    assert web.relays == {}


async def test_each_message_to_an_idle_conversation_is_shown_live_from_the_worker_that_runs_it(
    web: Node, workers: Workers, two_runs: Path
) -> None:
    """The second message starts a second run on a worker: the page shows that one, not the first one again."""
    workers()
    conv = Conversation("content-studio", model=f"scripted:{two_runs}")
    await conv.save_to(web.store, "alice", "Churn")
    for n, task in enumerate(["Write about churn", "Now about retention"], start=1):
        conv, run = await web.say(conv, task, "alice")
        assert isinstance(run, RemoteRun) and run.number == n

        events = await asyncio.wait_for(_all(run), BOUND_S)
        said = [e.content for e in events if isinstance(e, MessageEvent)]
        assert said == [f"Notes {n}.", f"Draft {n}.", f"Good {n}. APPROVE"]
        assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "stop_text"


async def test_a_job_taken_by_a_worker_that_died_before_owning_its_run_is_run_by_another(
    web: Node, workers: Workers, script: Path
) -> None:
    """A worker SIGKILLed between taking a message's job and owning its run leaves the job taken: the live
    workers see its heartbeat gone, put the job back, and one of them runs the conversation."""
    conv = Conversation("content-studio", model=f"scripted:{script}")
    tid = await conv.save_to(web.store, "alice", "Churn")
    _, run = await web.say(conv, "Write about churn", "alice")  # queued: no worker is up yet
    assert isinstance(run, RemoteRun)
    ghost = await web.bus.take("ghost-worker", BOUND_S)  # a worker takes it and dies: no heartbeat, ever
    assert ghost is not None and ghost.thread_id == tid
    workers()
    result = await asyncio.wait_for(run.wait(), BOUND_S)
    assert result.stop_reason == "stop_text"
    assert await web.bus.dead_takers() == []  # nothing is left held by the dead worker


async def _all(run: RemoteRun) -> list[Event]:
    return [event async for event in run]


async def test_a_file_a_worker_s_tool_wrote_is_served_by_a_web_process_sharing_the_data_folder(
    web: Node,
    workers: Workers,
    cluster_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer's write_file runs on the worker; the page on the web process shows the file live, and again in
    the reopened thread, read from the data folder both share (deployment.md)."""
    from chainlit.context import init_http_context

    from parley.web._elements import file_element as live_element
    from parley.web._history import file_element as reopened_element

    shared = tmp_path / "data"
    cluster_env["PARLEY_DATA_DIR"] = str(shared)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(shared))
    text = "# Churn\n\nTrack it monthly.\n"
    script = tmp_path / "writes.yaml"  # JSON is YAML
    script.write_text(
        json.dumps(
            {
                "roles": {
                    "researcher": ["Notes."],
                    "writer": [
                        {"tool": "write_file", "args": {"path": "post.md", "content": text}},
                        "In post.md.",
                    ],
                    "editor": ["Good. APPROVE"],
                }
            }
        )
    )
    workers()
    conv = Conversation("content-studio", model=f"scripted:{script}")
    tid = await conv.save_to(web.store, "alice", "Churn")
    _, run = await web.say(conv, "Write about churn", "alice")
    assert isinstance(run, RemoteRun)
    events = await asyncio.wait_for(_all(run), BOUND_S)
    assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "stop_text", events[-1]
    [written] = [e for e in events if isinstance(e, FileEvent)]
    assert written.name == "post.md"

    init_http_context()  # what the page is sent as the run shows it (a Chainlit element needs a session)
    shown = live_element(written)
    assert shown.url is not None and base64.b64decode(shown.url.split(",", 1)[1]).decode() == text
    [stored] = [e for e in await web.store.load_events(tid) if isinstance(e, FileEvent)]
    again = reopened_element(tid, "step", stored)  # and in the thread reopened later, on any replica
    assert again is not None and base64.b64decode(again["url"].split(",", 1)[1]).decode() == text
