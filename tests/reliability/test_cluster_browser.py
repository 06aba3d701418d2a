"""Issue 18's acceptance, in Chromium: a cluster of two `parley ui` replicas that only relay (`PARLEY_RUNS=workers`)
and `parley worker` processes, all real, over real PostgreSQL and Redis.

alice starts a run on replica 1 and shares the room with bob; bob watches it live on replica 2, interjects and
stops it there, and exactly one run executes. Then a worker is killed mid-run while alice watches: another takes
the run over from its checkpoint and her page goes on to the end, every finished turn once.

Set PARLEY_UI_SHOTS=/some/folder to keep a screenshot of each state worth looking at.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from chat_started import STARTS, send_message
from test_replicas import AGENT_STEP, PASSWORDS, Replica, agent, log_in, ready, send
from ui.conftest import browser_missing, wait_until
from ui.web_servers import clear_redis, start_worker, stop_workers

from parley.events import HumanMessageEvent, MessageEvent, TurnAbandonedEvent, event_adapter

if browser_missing() is None:
    from playwright.sync_api import Locator, Page, expect
else:
    pytest.skip(browser_missing() or "", allow_module_level=True)

REDIS_DEFAULT = "redis://127.0.0.1:6379/0"
TTL_S = 4.0
"""The lease's time to live: a dead worker's run is taken over within about that (renewals every ttl/3 or so
still keep a live one's on a loaded machine)."""
RUN_S = 120.0
"""How long a whole scripted run may take on a loaded machine, a takeover included."""
STUDIO = [
    ("researcher", "Research notes: replacing a lost customer costs five to seven times more."),
    ("writer", "Draft one: churn is the quiet leak in a small business's revenue."),
    ("editor", "Open with the cost of a lost customer, then send it back."),
    ("researcher", "Research follow-up: monthly churn above 3% is the usual warning sign."),
    ("writer", "Draft two: track churn monthly and fix the top reason first."),
    ("editor", "Clear and accurate. APPROVE"),
]
"""content-studio's conversation (researcher, writer, editor in turn); the editor's APPROVE ends it."""
BOBS_WORDS = "Add a checklist a small shop can follow"
pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def redis_url() -> str:
    """A Redis that answers (`PARLEY_TEST_REDIS_URL`, else the local default); the test skips if none."""
    url = os.environ.get("PARLEY_TEST_REDIS_URL") or REDIS_DEFAULT
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        pytest.skip(
            f"Redis not reachable at {url}: start it or set PARLEY_TEST_REDIS_URL ({type(exc).__name__}: {exc})"
        )
    finally:
        client.close()
    return url


class WebNode(Replica):
    """A `parley ui` replica of the cluster: it relays, workers run."""

    def __init__(
        self, data_dir: Path, script: Path, *, database: str, secret: str, cluster: dict[str, str]
    ) -> None:
        super().__init__(data_dir, script, database=database, secret=secret)
        self.cluster = cluster

    def env(self) -> dict[str, str]:
        return super().env() | self.cluster


class Cluster:
    """The test's cluster: web replicas and workers on one database, one Redis and one key prefix of its own."""

    def __init__(self, database: str, redis_at: str, folder: Path, script: Path) -> None:
        self.database = database
        self.folder = folder
        self.script = script
        self.secret = secrets.token_urlsafe(32)
        self.settings = {
            "PARLEY_REDIS_URL": redis_at,
            "PARLEY_REDIS_PREFIX": f"parley-test-{uuid.uuid4().hex}",
            "PARLEY_RUNS": "workers",
            "PARLEY_LEASE_TTL_S": str(TTL_S),
        }
        self.web: list[WebNode] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def replica(self, name: str) -> WebNode:
        node = WebNode(
            self.folder / name, self.script, database=self.database, secret=self.secret, cluster=self.settings
        )
        self.web.append(node)
        return node

    def worker(self) -> subprocess.Popen[bytes]:
        """Start one more `parley worker` of the cluster."""
        n = len(self.workers)
        proc = start_worker(
            self.web[0].env() | {"PARLEY_DATA_DIR": str(self.folder / f"worker-{n}")}, self.worker_log(n)
        )
        self.workers.append(proc)
        return proc

    def worker_log(self, n: int) -> Path:
        return self.folder / f"worker-{n}.log"

    def owner(self, tid: str) -> subprocess.Popen[bytes] | None:
        """The worker whose lease holds `tid`'s run now (a holder is named host-pid-random)."""
        holder = self.web[0].query(lambda s: s.lease_holder(tid))
        pid = int(holder.rsplit("-", 2)[1]) if holder else None
        return next((w for w in self.workers if w.pid == pid), None)

    def stop(self) -> None:
        stop_workers(self.workers)
        for node in self.web:
            node.stop()
        clear_redis(self.settings["PARLEY_REDIS_URL"], self.settings["PARLEY_REDIS_PREFIX"])

    def logs(self) -> str:
        parts = [f"--- parley ui on {node.url}:\n{node.log_tail()}" for node in self.web]
        for n in range(len(self.workers)):
            text = self.worker_log(n).read_text(encoding="utf-8", errors="replace")
            parts.append(f"--- parley worker {n}:\n" + "\n".join(text.splitlines()[-40:]))
        return "\n".join(parts)


def studio_script(
    folder: Path, replies: list[tuple[str, str]], delays: dict[str, float], held: Collection[int] = ()
) -> Path:
    """A scripted content-studio: `replies` in turn, each role's reply streaming for its `delays` seconds; the
    replies numbered in `held` (from 0) hold after their first word until a human acts (a message, Stop)."""
    roles: dict[str, list[Any]] = {}
    for n, (who, text) in enumerate(replies):
        roles.setdefault(who, []).append({"text": text, "hold": True} if n in held else text)
    path = folder / "studio.yaml"  # JSON is YAML
    path.write_text(json.dumps({"roles": roles, "delay_s": 1.0, "role_delay_s": delays}), encoding="utf-8")
    return path


@pytest.fixture
def cluster(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """`cluster(replies, delays, replicas=2, workers=2)`: the cluster booted, with the users alice and bob."""
    made: list[Cluster] = []
    at = redis_url()

    def make(
        replies: list[tuple[str, str]],
        delays: dict[str, float],
        *,
        replicas: int = 2,
        workers: int = 2,
        held: Collection[int] = (),
    ) -> Cluster:
        one = Cluster(db_url, at, tmp_path, studio_script(tmp_path, replies, delays, held))
        made.append(one)
        nodes = [one.replica(f"web-{n}") for n in range(replicas)]
        for user, password in PASSWORDS.items():
            nodes[0].parley("users", "add", user, "--password-stdin", stdin=password + "\n")
        for node in nodes:
            node.launch()  # they boot at once
        for _ in range(workers):
            one.worker()
        for node in nodes:
            node.wait_ready()
        return one

    yield make
    for one in made:
        one.stop()
        print(one.logs())  # shown if the test failed


def stored(node: Replica, tid: str) -> list[Any]:
    return [event_adapter.validate_python(r.payload) for r in node.query(lambda s: s.events(tid))]


def note(page: Page, text: str | re.Pattern[str]) -> Locator:
    """A message of parley's own (a status line, another person's message) or an agent's, by its text."""
    return page.locator(AGENT_STEP).filter(has_text=text)


def open_from_sidebar(page: Page, tid: str) -> None:
    expect(page.locator(f"#thread-{tid} a")).to_be_visible()
    STARTS[id(page)].expect_new()
    page.locator(f"#thread-{tid} a").click()
    page.wait_for_url(f"**/thread/{tid}")
    ready(page)


def type_message(page: Page, text: str) -> None:
    send_message(page, text)


def snap(page: Page, name: str) -> None:
    """A screenshot of the page, if PARLEY_UI_SHOTS names a folder."""
    shots = os.environ.get("PARLEY_UI_SHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / f"cluster-{name}.png"))


def test_a_shared_room_watched_interjected_and_stopped_from_the_other_replica_runs_once(
    cluster: Callable[..., Cluster], person: Callable[[], Page]
) -> None:
    # The writer's turn holds until bob comes in and speaks; the editor's until he stops it.
    replies = STUDIO[:3]
    one = cluster(replies, {}, held={1, 2})
    a, b = one.web
    alice = person()
    log_in(alice, a, "alice")
    tid = send(alice, "Write about churn")
    expect(agent(alice, "writer", 2)).to_be_visible()  # the researcher has spoken; the writer streams
    assert one.owner(tid) is not None  # a worker runs it: the web replicas only relay
    shared = a.parley("share", tid, "bob", "--as", "alice")
    assert "they may watch and write" in shared.stdout

    # bob, on the other replica, opens the room from his sidebar while the writer's turn is live.
    bob = person()
    log_in(bob, b, "bob")
    open_from_sidebar(bob, tid)
    assert a.messages(tid) == [("researcher", replies[0][1], 1)]  # the writer's turn is not stored yet
    expect(agent(bob, "researcher", 1)).to_contain_text(replies[0][1])

    type_message(bob, BOBS_WORDS)  # he speaks while the writer writes: it joins after this turn
    # Shown live on his page once said: it was not stored when he came in.
    expect(agent(bob, "writer", 2)).to_contain_text(replies[1][1], timeout=RUN_S * 1000)
    joined = "↳ bob's message joined the conversation after turn 2"
    expect(note(alice, joined)).to_contain_text(BOBS_WORDS)  # alice sees who said what
    expect(agent(bob, "editor", 3)).to_be_visible()  # the next turn streams, with bob's words before it
    snap(bob, "bob-watching")
    snap(alice, "alice-sees-bob")

    # Stop on replica 2: the run ends on both pages.
    controls = note(bob, "The team is working")
    expect(controls).to_have_count(1)  # one Stop on his page, as on hers
    controls.get_by_role("button", name="Stop").click()
    expect(note(bob, "Run ended")).to_contain_text("Stopped by you at turn 3")
    expect(note(alice, "Run ended")).to_contain_text(re.compile(r"Stopped .*at turn 3"))
    expect(agent(alice, "editor", 3)).to_contain_text("cut short: stopped")
    snap(alice, "alice-stopped")

    events = wait_until(
        lambda: (evs := stored(a, tid)) and evs[-1].type == "result" and evs, "the run's result stored"
    )
    assert events[-1].stop_reason == "stopped"
    kinds = [e.type for e in events]
    assert kinds.count("run_started") == 1  # exactly one run
    said = [(e.source, e.content, e.turn) for e in events if isinstance(e, MessageEvent)]
    assert said == [(who, text, n) for n, (who, text) in enumerate(replies[:2], start=1)]
    human = [e for e in events if isinstance(e, HumanMessageEvent) and e.mode == "say"]
    assert [(h.author, h.content, h.turn) for h in human] == [("bob", BOBS_WORDS, 2)]
    # bob's words reached the team between the writer's turn and the editor's.
    writer = next(i for i, e in enumerate(events) if isinstance(e, MessageEvent) and e.source == "writer")
    bobs = events.index(human[0])
    cut = next(i for i, e in enumerate(events) if isinstance(e, TurnAbandonedEvent))
    assert writer < bobs < cut and events[cut].source == "editor"
    # One model call per turn: two finished, the editor's cut short. A second run would have made more.
    calls = [e for e in events if e.type == "usage"]
    assert [c.cancelled for c in calls] == [False, False, True]


def test_a_worker_killed_mid_run_is_replaced_and_the_page_goes_on_to_the_end(
    cluster: Callable[..., Cluster], person: Callable[[], Page]
) -> None:
    one = cluster(STUDIO, {"editor": 6.0}, replicas=1, workers=2)
    (a,) = one.web
    alice = person()
    log_in(alice, a, "alice")
    tid = send(alice, "Write about churn")
    wait_until(lambda: len(a.messages(tid)) >= 2, "two finished turns in the store", RUN_S)
    first = one.owner(tid)
    assert first is not None, "a worker holds the run"
    first.send_signal(signal.SIGKILL)  # mid-run, while the editor's turn streams
    first.wait()
    kept = a.messages(tid)
    assert kept == [(who, text, n) for n, (who, text) in enumerate(STUDIO[: len(kept)], start=1)]
    assert kept and len(kept) < len(STUDIO)

    # The other worker carries the run on from its checkpoint; alice's page follows it to the end.
    expect(agent(alice, "editor", 6)).to_contain_text("APPROVE", timeout=RUN_S * 1000)
    expect(note(alice, "Run ended")).to_contain_text("editor said APPROVE")
    snap(alice, "alice-after-takeover")
    for n, (who, text) in enumerate(STUDIO, start=1):
        expect(agent(alice, who, n)).to_have_count(1)  # each turn once on the page
        expect(agent(alice, who, n)).to_contain_text(text)

    events = wait_until(
        lambda: (evs := stored(a, tid)) and evs[-1].type == "result" and evs, "the run's result stored"
    )
    assert events[-1].stop_reason == "stop_text"
    said = [(e.source, e.content, e.turn) for e in events if isinstance(e, MessageEvent)]
    assert said == [
        (who, text, n) for n, (who, text) in enumerate(STUDIO, start=1)
    ]  # each finished turn once
    assert [e.type for e in events].count("run_started") == 2  # the run, and its carrying on
    # The other worker carried it on: the web replica only relays (PARLEY_RUNS=workers).
    survivor = next(n for n, w in enumerate(one.workers) if w is not first)
    assert f"carried on the run of {tid}" not in a.log_path.read_text(encoding="utf-8")
    assert f"carried on the run of {tid}" in one.worker_log(survivor).read_text(encoding="utf-8")
