"""Web chat under load: 50, 100 and 200 conversations at once through the real socket, and what the web
path adds per message to one long conversation.

It starts the real web chat (`parley ui`, a scripted model, SQLite in a temporary data folder, one user
made with `parley users add`) and speaks Chainlit's socket protocol to it, as a browser tab does (the
security tests' client). For each level, every tab signs in and connects; then all send their tasks within
one reply's time (so the conversations overlap without answering in lockstep) and receive every agent
message until their runs end. A scripted reply streams a word at a time, as a model streams tokens.

Added latency of a message: when the tab received it, minus the `ts` the engine stamped on its event
(stored with it). Client and server run on this machine and read the same clock.
Web path per message: one long conversation through the socket, then the same team and script run by a
parley Run in this process (same SQLite store kind): (web - engine) / messages. Replies come at once
there, so the figure is the web path's cost, not hidden behind model time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench._baseline import BASELINE_COMMIT, baseline_tree
from bench._cluster import Cluster
from bench._common import ROOT, Stopwatch, parser, percentile, save, table
from parley import Conversation
from parley.events import RunResult
from parley.store import Store

# The web tests' server launcher and socket client, reused as they are (tests/ is not a package).
sys.path[:0] = [p for p in (str(ROOT / "tests"), str(ROOT / "tests" / "security")) if p not in sys.path]
import _websec  # noqa: E402
from ui.conftest import Server  # noqa: E402

ROLES = ("planner", "researcher", "writer", "reviewer")
USER, PASSWORD = "bench", "bench-password-1"
LOAD_TEAM, LONG_TEAM = "bench-webload", "bench-webload-long"
TASK = "Plan the launch of a product in three markets"
P95_TARGET_MS = 50.0
WEB_TARGET_MS = 2.0
SHARP_RISE = 2.0
"""p95 more than this many times the previous level's counts as degrading."""
LOGINS_AT_ONCE = 4
"""Below the sign-in limit of five attempts in flight per user name."""
CONNECTS_AT_ONCE = 25
CONNECT_S = 20.0
"""A tab that has not connected by then counts as a connection error."""
HEADER = re.compile(r"\*\*(\w+)\*\* · turn (\d+)")


@dataclass(frozen=True, kw_only=True)
class Settings:
    levels: tuple[int, ...]
    load_turns: int
    """Agent messages per conversation at each level."""
    load_delay_s: float
    """Seconds the scripted model takes per reply (streamed a word at a time), like a real model."""
    long_turns: int
    repeats: int
    run_deadline_s: float
    level_repeats: int = 1
    """How many times `--cluster` measures each level (on each side): a level's figures are those of its run of
    median server CPU, every run's beside them (a shared machine's CPU time per operation varies by a fifth from
    minute to minute)."""


FULL = Settings(
    levels=(50, 100, 200),
    load_turns=8,
    load_delay_s=3.0,
    long_turns=200,
    repeats=3,
    run_deadline_s=90.0,
    level_repeats=3,
)
SMOKE = Settings(
    levels=(3,),
    load_turns=4,
    load_delay_s=0.05,
    long_turns=8,
    repeats=1,
    run_deadline_s=30.0,
    level_repeats=2,
)
CLUSTER_LEVELS, CLUSTER_SMOKE_LEVELS = (200, 400), (4,)
BASELINE_LEVELS, BASELINE_SMOKE_LEVELS = (100, 200), (4,)
"""The loads the baseline (bench/_baseline.py) runs at beside a cluster: 100, the most one process of it served
within the latency target, and 200, the cluster's first level (it cannot finish 400 conversations in time)."""
BASELINE_RATIO = 0.5
"""The cluster's CPU per message against the baseline's: at most half (issue 18)."""
REPLICAS, WORKERS = 2, 2
CPU_TARGET_MS = 10.0
"""Server CPU per message through the cluster: half of one process's, about 20 ms when issue 18 was filed."""


# -- the team and its scripts ---------------------------------------------------------------------------


def reply(role: str, i: int) -> str:
    """About 30 words, distinct per role and turn (the engine stops a role that repeats itself)."""
    return (
        f"{role} on turn {i + 1}: the figures for region {i % 7} look steady, margins hold at {20 + i % 9} "
        "percent, and the next step is to check the supplier terms and the launch calendar before we "
        "commit the budget for the quarter."
    )


def write_team(folder: Path, name: str, turns: int, delay_s: float) -> None:
    """A four-role round robin of `turns` messages whose roles answer from their own script."""
    script = folder / f"{name}.script.yaml"
    per_role = -(-turns // len(ROLES))
    script.write_text(
        json.dumps({"roles": {r: [reply(r, i) for i in range(per_role)] for r in ROLES}, "delay_s": delay_s}),
        encoding="utf-8",
    )
    roles = [
        {"name": r, "description": f"the {r}", "prompt": f"You are the {r}.", "model": f"scripted:{script}"}
        for r in ROLES
    ]
    team = {
        "name": name,
        "description": "webload benchmark",
        "pattern": "round_robin",
        "roles": roles,
        "termination": {"max_turns": turns},
    }
    (folder / "teams").mkdir(exist_ok=True)
    (folder / "teams" / f"{name}.yaml").write_text(json.dumps(team), encoding="utf-8")


class BenchServer(Server):
    """`parley ui` that also finds the benchmark's teams (`extra`: settings of its own, a cluster's)."""

    def __init__(self, data_dir: Path, script: str, teams: Path, extra: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, script)
        self.teams = teams
        self.extra = extra or {}

    @property
    def db_url(self) -> str:
        return self.extra.get("PARLEY_DATABASE_URL") or super().db_url

    def env(self) -> dict[str, str]:
        return super().env() | {"PARLEY_TEAMS": str(self.teams)} | self.extra


# -- one chat tab ---------------------------------------------------------------------------------------


class Tab(_websec.ChatSocket):
    """A chat tab that notes when each agent message and the end of the run arrived."""

    def __init__(self, server: Server, cookie: str) -> None:
        super().__init__(server, cookie)
        self.arrived: dict[tuple[str, int], float] = {}
        self.ended_at: float | None = None

    async def _on_event(self, event: str, data: Any = None) -> None:
        now = time.time()
        if event == "new_message" and isinstance(data, dict):
            text = str(data.get("output", ""))
            if text.startswith("**Run ended**"):
                self.ended_at = now
            elif (m := HEADER.match(text)) and m[1] in ROLES:
                self.arrived.setdefault((m[1], int(m[2])), now)
        await super()._on_event(event, data)

    async def run_task(self) -> float:
        """Send the task; wait for its run to end; the send time (Unix seconds)."""
        sent = time.time()
        await self.say(TASK)
        await self.wait_for(lambda: self.ended_at is not None, "the run to end")
        return sent


def use_team(name: str) -> None:
    # ChatSocket reads its module's TEAM when it connects (the chat profile) and WAIT_S when it waits.
    _websec.TEAM = name


def wait_at_most(seconds: float) -> None:
    _websec.WAIT_S = seconds


async def sign_in(server: Server, n: int) -> list[str]:
    """n sign-ins (one per tab, as n browsers would), a few at a time; their cookies."""
    gate = asyncio.Semaphore(LOGINS_AT_ONCE)

    def one() -> str:
        client = _websec.login(server, USER, PASSWORD)
        try:
            return _websec.cookie_of(client)
        finally:
            client.close()

    async def gated() -> str:
        async with gate:
            return await asyncio.to_thread(one)

    return list(await asyncio.gather(*(gated() for _ in range(n))))


class ServerWatch:
    """The server processes' resident memory (VmRSS, summed, sampled in a thread) and CPU time while a level runs."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.procs = [Path(f"/proc/{pid}") for pid in pids]
        self.by_process_s: list[float] = []
        """Each process's CPU time from the mark to the end (after `mark` and the exit), in the order of `pids`."""
        self.before_mb = self.peak_mb = 0.0
        self.cpu_s = self.marked_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def rss_mb(self) -> float:
        total = 0.0
        for proc in self.procs:
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        return total

    def each_cpu(self) -> list[float]:
        """Each process's CPU time so far (user and system)."""
        out = []
        for proc in self.procs:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            out.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))  # utime + stime
        return out

    def cpu(self) -> float:
        return sum(self.each_cpu())

    def mark(self) -> None:
        """Note the CPU time used so far (`marked_cpu_s`): what connecting the tabs cost."""
        self._marked = self.each_cpu()
        self.marked_cpu_s = sum(self._marked) - self._cpu0
        self.marked_s = time.perf_counter() - self._t0

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_mb = max(self.peak_mb, self.rss_mb())

    def __enter__(self) -> ServerWatch:
        self.before_mb = self.peak_mb = self.rss_mb()
        self._marked = self.each_cpu()  # until `mark`: from the start
        self._cpu0 = sum(self._marked)
        self._t0 = time.perf_counter()
        self.marked_s = 0.0
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.rss_mb())
        end = self.each_cpu()
        self.cpu_s = sum(end) - self._cpu0
        self.by_process_s = [e - m for e, m in zip(end, self._marked, strict=True)]


@contextlib.contextmanager
def quiet_collector() -> Iterator[Callable[[], None]]:
    """Keep this process's garbage collector from pausing the tabs while they time the server's messages.

    The client stands for hundreds of browsers in one process. Its full collections walked every tab's objects:
    pauses of 0.66 and 1.2 s at 200 conversations (measured with `gc.callbacks`), each adding its length to the
    latency of every message that arrived meanwhile, on the server's account (`gc.freeze` of the connected tabs
    still left pauses of 0.1 to 0.28 s). Calling what this yields once the tabs are connected turns the collector
    off until the level ends; reference counting still frees almost everything, and what cycles are left are
    collected on the way out."""
    paused = False

    def pause() -> None:
        nonlocal paused
        paused = gc.isenabled()
        gc.disable()

    try:
        yield pause
    finally:
        if paused:
            gc.enable()
            gc.collect()


class LoopLag:
    """How late this process's own event loop runs (a late client inflates the latencies it measures)."""

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.worst_ms = max(self.worst_ms, (time.perf_counter() - t - 0.01) * 1000)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


# -- a level: n conversations at once --------------------------------------------------------------------


@dataclass(kw_only=True)
class Outcome:
    """One conversation of a level."""

    thread_id: str | None = None
    sent: float = 0.0
    ended: float | None = None
    arrived: dict[tuple[str, int], float] = field(default_factory=dict)
    error: str | None = None
    """`connect`, `dropped` or `unfinished`."""
    detail: str = ""


async def drive(
    servers: Sequence[Server],
    cookies: Sequence[str],
    deadline_s: float,
    spread_s: float = 0.0,
    connected: Callable[[], None] = lambda: None,
) -> list[Outcome]:
    """Connect a tab per cookie, to each server in turn (then call `connected`), send the tasks, evenly spread over `spread_s`, and
    wait for every run to end. Spread over one reply's time, the conversations run at once without answering in lockstep
    (with a scripted model's exact delays they otherwise would, every reply of every conversation in the
    same millisecond: a burst no set of real users makes)."""
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    outcomes = [Outcome() for _ in cookies]
    tabs: list[Tab | None] = [None] * len(cookies)

    async def connect(i: int) -> None:
        async with gate:
            tab = Tab(servers[i % len(servers)], cookies[i])  # a tab stays on its server: sticky sessions
            try:
                await tab.__aenter__()
                tabs[i] = tab
            except Exception as exc:
                outcomes[i].error, outcomes[i].detail = "connect", f"{type(exc).__name__}: {exc}"

    async def converse(i: int, tab: Tab) -> None:
        out = outcomes[i]
        await asyncio.sleep(spread_s * i / len(cookies))
        try:
            out.sent = await tab.run_task()
        except Exception as exc:  # ChatSocket's time-out, a dropped socket
            out.error = "dropped" if tab.dropped.is_set() else "unfinished"
            out.detail = f"{type(exc).__name__}: {exc}"
        out.thread_id, out.ended, out.arrived = tab.thread_id, tab.ended_at, dict(tab.arrived)

    wait_at_most(CONNECT_S)
    await asyncio.gather(*(connect(i) for i in range(len(cookies))))
    connected()
    wait_at_most(deadline_s)
    try:
        await asyncio.gather(*(converse(i, t) for i, t in enumerate(tabs) if t is not None))
    finally:
        await asyncio.gather(*(t.__aexit__() for t in tabs if t is not None), return_exceptions=True)
    return outcomes


@dataclass(frozen=True)
class Stored:
    """What the server stored for a conversation: the engine's timestamp of each agent message, its stop."""

    said: dict[tuple[str, int], float]
    stop_reason: str | None


async def stored(db_url: str, thread_ids: Sequence[str]) -> dict[str, Stored]:
    store = await Store.open(db_url)
    try:
        out = {}
        for tid in thread_ids:
            rows = await store.events(tid)
            said = {
                (r.payload["source"], r.payload["turn"]): r.payload["ts"] for r in rows if r.type == "message"
            }
            stop = next((r.payload.get("stop_reason") for r in rows if r.type == "result"), None)
            out[tid] = Stored(said, stop)
        return out
    finally:
        await store.close()


def latencies(outcome: Outcome, said: dict[tuple[str, int], float]) -> list[float]:
    return [(outcome.arrived[key] - ts) * 1000 for key, ts in said.items() if key in outcome.arrived]


async def level(served: Served, n: int, s: Settings) -> dict[str, Any]:
    """n conversations at once; what each tab received, how late, and what went wrong."""
    use_team(LOAD_TEAM)
    with Stopwatch() as signing:
        cookies = await sign_in(served.servers[0], n)  # one login secret: a cookie works on every replica
    load_before = os.getloadavg()[0]
    with (  # the collector's run after the level counts in no figure
        quiet_collector() as connected,
        ServerWatch(served.pids()) as watch,
        LoopLag() as lag,
        Stopwatch() as wall,
    ):
        outcomes = await drive(
            served.servers, cookies, s.run_deadline_s, s.load_delay_s, lambda: (watch.mark(), connected())
        )
    found = await stored(served.db_url, [o.thread_id for o in outcomes if o.thread_id])
    lat: list[float] = []
    errors = {"connect": 0, "dropped": 0, "unfinished": 0, "missing_messages": 0, "bad_stop": 0}
    for o in outcomes:
        if o.error:
            errors[o.error] += 1
            continue
        mine = found.get(o.thread_id or "", Stored({}, None))
        if len(mine.said) != s.load_turns or len(o.arrived) != s.load_turns:
            errors["missing_messages"] += 1
        if mine.stop_reason != "max_turns":
            errors["bad_stop"] += 1
        lat += latencies(o, mine.said)
    finished = sum(1 for o in outcomes if not o.error and len(o.arrived) == s.load_turns and o.ended)
    received = sum(len(o.arrived) for o in outcomes)
    return {
        "conversations": n,
        "finished": finished,
        "messages_expected": n * s.load_turns,
        "messages_received": received,
        "latency_ms": spread(lat),
        "rss_before_mb": round(watch.before_mb, 1),
        "rss_peak_mb": round(watch.peak_mb, 1),
        "mb_per_conversation": round((watch.peak_mb - watch.before_mb) / n, 3),
        "errors": errors,
        "error_count": sum(errors.values()),
        "error_samples": [f"{o.error}: {o.detail}" for o in outcomes if o.error][:5],
        "sign_in_s": round(signing.s, 2),
        "wall_s": round(wall.s, 2),
        "connect_s": round(watch.marked_s, 2),
        "messages_per_s": round(received / max(wall.s - watch.marked_s, 1e-9), 1),
        "server_cpu_s": round(watch.cpu_s, 2),
        "server_cpu_ms_per_tab_connect": round(watch.marked_cpu_s * 1000 / n, 2),
        "server_cpu_ms_per_message": round((watch.cpu_s - watch.marked_cpu_s) * 1000 / max(received, 1), 2),
        "server_cpu_ms_per_message_by_kind": by_kind(served.kinds, watch.by_process_s, received),
        "client_loop_lag_max_ms": round(lag.worst_ms, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def by_kind(kinds: Sequence[str], cpu_s: Sequence[float], received: int) -> dict[str, float]:
    """CPU per message received, summed over the processes of each kind (a cluster's web replicas, its workers)."""
    out: dict[str, float] = {}
    for kind, seconds in zip(kinds, cpu_s, strict=True):
        out[kind] = out.get(kind, 0.0) + seconds * 1000 / max(received, 1)
    return {kind: round(ms, 2) for kind, ms in out.items()}


def server_pid(server: Server) -> int:
    assert server.proc is not None
    return server.proc.pid  # `parley ui` replaces itself with the Chainlit server: same process


@dataclass(frozen=True)
class Served:
    """What serves a level's tabs: one `parley ui`, or a cluster's web replicas (tabs spread over them) and
    workers (`pids`: every server process, whose CPU and memory count)."""

    servers: Sequence[Server]
    db_url: str
    pids: Callable[[], list[int]]
    kinds: Sequence[str] = ("one process",)
    """What each of `pids` is, in order: `web` or `worker` in a cluster."""

    @classmethod
    def single(cls, server: Server) -> Served:
        return cls([server], server.db_url, lambda: [server_pid(server)])


# -- one long conversation: web path against the engine alone -------------------------------------------


@dataclass(frozen=True)
class Pass:
    """One run of the long conversation."""

    seconds: float
    cpu_s: float
    """CPU time of the process that ran it (the server, or this one for the engine alone)."""
    latencies_ms: list[float]
    messages: int


async def long_web(server: Server, s: Settings) -> Pass:
    """From sending the task to the run's end on screen, through the web chat."""
    use_team(LONG_TEAM)
    wait_at_most(s.run_deadline_s)
    (cookie,) = await sign_in(server, 1)
    watch = ServerWatch([server_pid(server)])
    async with Tab(server, cookie) as tab:
        cpu0 = watch.cpu()
        sent = await tab.run_task()
        cpu_s = watch.cpu() - cpu0
        assert tab.ended_at is not None and tab.thread_id is not None
        outcome = Outcome(thread_id=tab.thread_id, sent=sent, ended=tab.ended_at, arrived=dict(tab.arrived))
    said = (await stored(server.db_url, [tab.thread_id]))[tab.thread_id].said
    return Pass(tab.ended_at - sent, cpu_s, latencies(outcome, said), len(outcome.arrived))


async def long_engine(data: Path, team: Path) -> Pass:
    """The same conversation run by parley alone: a Run on a Conversation with a SQLite store. Its latency
    is how long after its timestamp each message reached the Run's consumer."""
    store = await Store.open(f"sqlite+aiosqlite:///{data / 'engine.db'}")
    try:
        conv = Conversation(team)
        lat: list[float] = []
        cpu0 = time.process_time()  # every thread of this process, as the server's figure is
        with Stopwatch() as t:
            conv.attach(store, await store.create_thread(USER, conv.team.name, conv.model, TASK))
            async for ev in conv.start(TASK):
                if ev.type == "message":
                    lat.append((time.time() - ev.ts) * 1000)
                if isinstance(ev, RunResult):
                    break
        return Pass(t.s, time.process_time() - cpu0, lat, len(lat))
    finally:
        await store.close()


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values, default=0.0)}


async def web_path(server: Server, data: Path, s: Settings) -> dict[str, Any]:
    """Alternate web and engine-only runs of the long conversation; compare medians."""
    team = data / "teams" / f"{LONG_TEAM}.yaml"
    await long_engine(data, team)  # this process's first run pays for lazy imports, as the server's did
    web: list[Pass] = []
    engine: list[Pass] = []
    for _ in range(s.repeats):
        web.append(await long_web(server, s))
        engine.append(await long_engine(data, team))
        assert web[-1].messages == engine[-1].messages == s.long_turns, (
            web[-1].messages,
            engine[-1].messages,
        )

    def median(passes: list[Pass], what: str) -> float:
        return statistics.median(getattr(p, what) for p in passes)

    n = s.long_turns
    return {
        "messages": n,
        "web_s": [round(p.seconds, 3) for p in web],
        "engine_s": [round(p.seconds, 3) for p in engine],
        "ms_per_message": (median(web, "seconds") - median(engine, "seconds")) / n * 1000,
        "web_cpu_ms_per_message": median(web, "cpu_s") / n * 1000,
        "engine_cpu_ms_per_message": median(engine, "cpu_s") / n * 1000,
        "latency_ms": spread([x for p in web for x in p.latencies_ms]),
        "engine_latency_ms": spread([x for p in engine for x in p.latencies_ms]),
    }


# -- the benchmark ---------------------------------------------------------------------------------------


def degrades_at(levels: Sequence[dict[str, Any]]) -> int | None:
    """The first level with errors, a p95 over target, or a p95 that jumps from the level before."""
    prev = None
    for row in levels:
        p95 = row["latency_ms"]["p95"]
        if (
            row["error_count"]
            or p95 > P95_TARGET_MS
            or (prev is not None and p95 > SHARP_RISE * max(prev, 1.0))
        ):
            return int(row["conversations"])
        prev = p95
    return None


async def measure(server: Server, data: Path, s: Settings, *, long: bool = True) -> dict[str, Any]:
    """One process: the long conversation's web path and the levels once, or (`long` False: beside a cluster) the
    levels `s.level_repeats` times."""
    served = Served.single(server)
    await warm_up(served, s)
    if long:
        return {
            "web_path": await web_path(server, data, s),
            "levels": [await level(served, n, s) for n in s.levels],
        }
    return {"web_path": None, "levels": await repeated_levels(served, s)}


async def repeated_levels(served: Served, s: Settings) -> list[dict[str, Any]]:
    """Each level `s.level_repeats` times, the levels in turn (so that a slow minute does not fall on one level's
    runs only); per level, the run of median server CPU per message, with every run's figures under `runs`."""
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in s.levels}
    for _ in range(s.level_repeats):
        for n in s.levels:
            runs[n].append(await level(served, n, s))
    return [median_run(runs[n]) for n in s.levels]


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run of median server CPU per message (of an even number, the lower of the middle two), with each run's
    CPU, split and p95 under `runs`."""
    ranked = sorted(runs, key=lambda r: r["server_cpu_ms_per_message"])
    chosen = ranked[(len(ranked) - 1) // 2]
    return chosen | {
        "runs": [
            {
                "server_cpu_ms_per_message": r["server_cpu_ms_per_message"],
                "server_cpu_ms_per_message_by_kind": r["server_cpu_ms_per_message_by_kind"],
                "p95_ms": r["latency_ms"]["p95"],
                "error_count": r["error_count"],
                "load_average": r["load_average"],
            }
            for r in runs
        ]
    }


async def warm_up(served: Served, s: Settings) -> None:
    """A first conversation on each server pays for lazy imports (and, in a cluster, a worker's first run)."""
    use_team(LOAD_TEAM)
    cookies = await sign_in(served.servers[0], len(served.servers))
    for out in await drive(served.servers, cookies, s.run_deadline_s):
        assert not out.error, f"{out.error}: {out.detail}"


async def measure_cluster(served: Served, s: Settings) -> dict[str, Any]:
    await warm_up(served, s)
    return {"levels": await repeated_levels(served, s)}


def code_state() -> dict[str, Any]:
    """The commit measured, and engine or web files changed on top of it (figures depend on them)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.rstrip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "changed": git("status", "--porcelain", "--", "parley", "app.py").splitlines(),
    }


def measured(server: Server, data: Path, s: Settings, *, long: bool) -> dict[str, Any]:
    """`measure` on `server` (started here, with the benchmark's user, and stopped after; its log's last lines
    printed if the measurement failed)."""
    _websec.add_users(server, **{USER: PASSWORD})
    server.start()
    try:
        return asyncio.run(measure(server, data, s, long=long))
    except BaseException:
        print(server.log_tail(), file=sys.stderr)
        raise
    finally:
        server.stop()


def run(smoke: bool, cluster: bool = False) -> dict[str, Any]:
    s = SMOKE if smoke else FULL
    if cluster:  # the cluster's levels, and one process's at the same levels beside them
        s = replace(s, levels=CLUSTER_SMOKE_LEVELS if smoke else CLUSTER_LEVELS)
    with tempfile.TemporaryDirectory(prefix="parley-webload-") as tmp:
        data = Path(tmp)
        write_team(data, LOAD_TEAM, s.load_turns, s.load_delay_s)
        write_team(data, LONG_TEAM, s.long_turns, 0.0)
        script = str(data / f"{LOAD_TEAM}.script.yaml")
        found = measured(BenchServer(data, script, data / "teams"), data, s, long=not cluster)
        if cluster:
            found["baseline"] = run_baseline(
                data, script, s, BASELINE_SMOKE_LEVELS if smoke else BASELINE_LEVELS
            )
            found["cluster"] = run_cluster(data, script, s)
    levels = found["levels"]
    if cluster:
        cluster_found = found["cluster"]
        cluster_found["targets"] |= baseline_targets(found["baseline"], cluster_found["cluster"]["levels"])
        return {
            "settings": settings_of(s),
            "code": code_state(),
            "levels": levels,
            "baseline": found["baseline"],
            **cluster_found,
        }
    single = found["web_path"]
    top = levels[-1]
    return {
        "settings": settings_of(s),
        "code": code_state(),
        "levels": levels,
        "web_path": single,
        "degrades_at": degrades_at(levels),
        "targets": {
            "p95_ms": P95_TARGET_MS,
            "p95_at_top_level_ms": top["latency_ms"]["p95"],
            "p95_met": top["latency_ms"]["p95"] < P95_TARGET_MS and not top["error_count"],
            "web_ms_per_message": WEB_TARGET_MS,
            "web_ms_per_message_met": single["ms_per_message"] <= WEB_TARGET_MS,
        },
    }


def settings_of(s: Settings) -> dict[str, Any]:
    return {
        "levels": list(s.levels),
        "roles": len(ROLES),
        "load_messages": s.load_turns,
        "load_delay_s": s.load_delay_s,
        "long_messages": s.long_turns,
        "repeats": s.repeats,
    }


def run_baseline(data: Path, script: str, s: Settings, levels: tuple[int, ...]) -> dict[str, Any]:
    """One process of the baseline's code (bench/_baseline.py) at `levels`, each `s.level_repeats` times; or why
    it could not run."""
    tree, why = baseline_tree(data / "baseline-code")
    if tree is None:
        return {"commit": BASELINE_COMMIT, "skipped": why}
    # Its own data folder; its `parley` (the CLI, the web chat) imported from its tree ahead of this checkout's.
    server = BenchServer(data / "baseline", script, data / "teams", {"PYTHONPATH": str(tree)})
    found = measured(server, data, replace(s, levels=levels), long=False)
    return {"commit": BASELINE_COMMIT, "levels": found["levels"]}


def baseline_targets(baseline: dict[str, Any], cluster: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The cluster's CPU per message against the baseline's: at each level against the baseline at the same load
    (or its highest, for a load it cannot serve), and against the baseline's lowest figure of any load."""
    if "levels" not in baseline:
        return {"cpu_vs_baseline": None}
    base = {r["conversations"]: r["server_cpu_ms_per_message"] for r in baseline["levels"]}
    best = min(base.values())

    def against(n: int) -> int:
        return n if n in base else max(base)

    same = {
        r["conversations"]: {
            "baseline_level": against(r["conversations"]),
            "ratio": round(r["server_cpu_ms_per_message"] / base[against(r["conversations"])], 3),
            "ratio_to_lowest": round(r["server_cpu_ms_per_message"] / best, 3),
        }
        for r in cluster
    }
    return {
        "cpu_vs_baseline": same,
        "cpu_vs_baseline_met": all(v["ratio"] <= BASELINE_RATIO for v in same.values()),
        "cpu_vs_baseline_lowest_met": all(v["ratio_to_lowest"] <= BASELINE_RATIO for v in same.values()),
    }


def run_cluster(data: Path, script: str, s: Settings) -> dict[str, Any]:
    """The levels through 2 web replicas and 2 workers on PostgreSQL and Redis; the targets against one process."""

    def replica(folder: Path, env: dict[str, str]) -> Server:
        return BenchServer(folder, script, data / "teams", env)

    with Cluster(data / "cluster", replica, replicas=REPLICAS, workers=WORKERS, users={USER: PASSWORD}) as c:
        try:
            kinds = ["web"] * len(c.web) + ["worker"] * len(c.workers)
            found = asyncio.run(measure_cluster(Served(c.web, c.db_url, c.pids, kinds), s))
        except BaseException:
            print(c.logs(), file=sys.stderr)
            raise
    at = {r["conversations"]: r for r in found["levels"]}
    first = at[s.levels[0]]
    p95 = statistics.median(run["p95_ms"] for run in first["runs"])
    return {
        "cluster": {"replicas": REPLICAS, "workers": WORKERS, "levels": found["levels"]},
        "targets": {
            "p95_ms": P95_TARGET_MS,
            "p95_at_first_level_ms": p95,  # the median of the level's runs, none of which may have errors
            "p95_met": p95 < P95_TARGET_MS and not any(run["error_count"] for run in first["runs"]),
            "cpu_ms_per_message_target": CPU_TARGET_MS,
            "cpu_ms_per_message": {n: r["server_cpu_ms_per_message"] for n, r in at.items()},
            "cpu_met": all(r["server_cpu_ms_per_message"] <= CPU_TARGET_MS for r in at.values()),
        },
    }


LEVEL_HEADERS = (
    "conversations",
    "finished",
    "messages",
    "p50 ms",
    "p95 ms",
    "max ms",
    "MB/conv",
    "peak MB",
    "errors",
    "msg/s",
    "CPU ms/msg",
    "wall s",
)


def level_rows(levels: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["conversations"],
            r["finished"],
            f"{r['messages_received']}/{r['messages_expected']}",
            r["latency_ms"]["p50"],
            r["latency_ms"]["p95"],
            r["latency_ms"]["max"],
            r["mb_per_conversation"],
            r["rss_peak_mb"],
            r["error_count"],
            r["messages_per_s"],
            r["server_cpu_ms_per_message"],
            r["wall_s"],
        )
        for r in levels
    ]


def report(data: dict[str, Any]) -> None:
    title = "Web chat under load: added latency per agent message (engine event -> socket)"
    if "cluster" in data:
        report_cluster(data, title)
        return
    table(LEVEL_HEADERS, level_rows(data["levels"]), title=title)
    w = data["web_path"]
    print()
    table(
        ["path", "seconds (median)", "CPU ms/message", "p50 ms", "p95 ms"],
        [
            (
                "web (socket)",
                statistics.median(w["web_s"]),
                w["web_cpu_ms_per_message"],
                w["latency_ms"]["p50"],
                w["latency_ms"]["p95"],
            ),
            (
                "engine alone",
                statistics.median(w["engine_s"]),
                w["engine_cpu_ms_per_message"],
                w["engine_latency_ms"]["p50"],
                w["engine_latency_ms"]["p95"],
            ),
        ],
        title=f"One long conversation ({w['messages']} messages, 4 roles, replies at once)",
    )
    t = data["targets"]
    print(
        f"\np95 at {data['levels'][-1]['conversations']} conversations: {t['p95_at_top_level_ms']:.1f} ms "
        f"(target < {P95_TARGET_MS:g}: {'met' if t['p95_met'] else 'MISSED'}); web path "
        f"{w['ms_per_message']:.2f} ms/message (target <= {WEB_TARGET_MS:g}: "
        f"{'met' if t['web_ms_per_message_met'] else 'MISSED'}); degrades at: {data['degrades_at'] or 'none'}"
    )


def report_cluster(data: dict[str, Any], title: str) -> None:
    c = data["cluster"]
    table(LEVEL_HEADERS, level_rows(data["levels"]), title=f"{title}\none process")
    print()
    base = data["baseline"]
    if "levels" in base:
        where = f"one process of the code when issue 18 was filed ({base['commit'][:7]}, bench/_baseline.py)"
        table(LEVEL_HEADERS, level_rows(base["levels"]), title=where)
    else:
        print(f"baseline not measured: {base['skipped']}")
    print()
    where = f"{c['replicas']} web replicas and {c['workers']} workers (CPU and memory: all of them)"
    table(LEVEL_HEADERS, level_rows(c["levels"]), title=where)
    single = {r["conversations"]: r for r in data["levels"]}
    print()
    table(
        ["conversations", "p95 cluster / one process", "CPU per message cluster / one process"],
        [
            (
                r["conversations"],
                r["latency_ms"]["p95"] / max(single[r["conversations"]]["latency_ms"]["p95"], 1e-9),
                r["server_cpu_ms_per_message"]
                / max(single[r["conversations"]]["server_cpu_ms_per_message"], 1e-9),
            )
            for r in c["levels"]
        ],
        title="Ratios",
    )
    for r in c["levels"]:
        split = r["server_cpu_ms_per_message_by_kind"]
        print(
            f"CPU ms per message at {r['conversations']}: web replicas {split.get('web', 0):.1f}, "
            f"workers {split.get('worker', 0):.1f}"
        )
    print(f"\nEach level was run {len(c['levels'][0]['runs'])} times; the tables show its run of median CPU")
    sides = (("one process", data["levels"]), ("cluster", c["levels"]), ("baseline", base.get("levels", [])))
    for where, levels in sides:
        for r in levels:
            cpu = ", ".join(f"{run['server_cpu_ms_per_message']:.2f}" for run in r["runs"])
            p95 = ", ".join(f"{run['p95_ms']:.1f}" for run in r["runs"])
            print(f"{where} at {r['conversations']}: CPU ms per message {cpu}; p95 ms {p95}")
    t = data["targets"]
    cpu = ", ".join(f"{v:.1f} at {n}" for n, v in t["cpu_ms_per_message"].items())
    print(
        f"\ncluster p95 at {data['levels'][0]['conversations']} conversations: {t['p95_at_first_level_ms']:.1f} ms "
        f"(target < {P95_TARGET_MS:g}: {'met' if t['p95_met'] else 'MISSED'}); server CPU ms per message: {cpu} "
        f"(target <= {CPU_TARGET_MS:g}: {'met' if t['cpu_met'] else 'MISSED'})"
    )
    if t["cpu_vs_baseline"]:
        same = ", ".join(
            f"{v['ratio']:.2f} at {n} (baseline at {v['baseline_level']})"
            for n, v in t["cpu_vs_baseline"].items()
        )
        lowest = ", ".join(f"{v['ratio_to_lowest']:.2f} at {n}" for n, v in t["cpu_vs_baseline"].items())
        print(
            f"cluster CPU per message / the baseline's at the same load: {same} (target <= {BASELINE_RATIO:g}: "
            f"{'met' if t['cpu_vs_baseline_met'] else 'MISSED'}); / the baseline's lowest of any load: {lowest} "
            f"({'met' if t['cpu_vs_baseline_lowest_met'] else 'MISSED'})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--cluster",
        action="store_true",
        help=f"{CLUSTER_LEVELS} conversations through {REPLICAS} web replicas and {WORKERS} workers (PostgreSQL, "
        "Redis), and through one process beside them",
    )
    args = p.parse_args(argv)
    data = run(args.smoke, args.cluster)
    report(data)
    save("webload-cluster" if args.cluster else "webload", data, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
