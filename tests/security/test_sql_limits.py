"""sql_query's limits hold against a hostile model: a query cannot run past its 2 s, allocate without
bound, or outlive the call, and the database stays read-only.

SQLite checks its progress handler only between steps of its virtual machine, so one call of a
built-in function (printf with a two-billion precision, instr over a megabyte of text) used to run
to its end: 10 s each, 36 s for three. Now each query runs in a worker process that is killed at
the limit, and the functions that build values of any size are refused before they run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _support import collect, team_yaml
from autogen_core import CancellationToken

from parley import Conversation
from parley.engine.autogen.tools import BoundTool
from parley.events import Event, RunResult, ToolCallEvent
from parley.tools import RunContext, ToolRegistry

ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = ROOT / "tools"
PARLEY = str(Path(sys.executable).parent / "parley")
SAFETY_S = 90  # a hang guard for a machine shared by several test runs, never a speed check
WORKER = "_sqlworker.py"

PRINTF = "SELECT printf('%.*c', 2000000000, 'x')"
# One instr call over ~900 kB compares about 2e11 bytes: seconds inside a single built-in call, and
# two of them in one expression, where SQLite's progress handler is never consulted.
_HALF = "substr(x, 1, 400000)"
_INSTR = f"instr(x || {_HALF}, {_HALF} || '%s')"
SLOW_BUILTIN = (
    "WITH RECURSIVE s(x, n) AS (SELECT 'aaaaaaaa', 0 UNION ALL SELECT x || x, n + 1 FROM s WHERE n < 16) "
    f"SELECT {_INSTR % 'b'} + {_INSTR % 'c'} AS found FROM s WHERE n = 16"
)
ENDLESS_CTE = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
# UNION keeps every row to drop duplicates: each row carries half a megabyte, so memory grows with time.
HOARDING_CTE = (
    "WITH RECURSIVE s(x, n) AS (SELECT 'aaaaaaaa', 0 UNION ALL SELECT x || x, n + 1 FROM s WHERE n < 16), "
    "r(i, y) AS (SELECT 1, (SELECT x FROM s WHERE n = 16) UNION SELECT i + 1, y FROM r) SELECT count(*) FROM r"
)


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    reg = ToolRegistry.discover([TOOLS_DIR])
    assert not [e for e in reg.errors if str(TOOLS_DIR) in e], reg.errors
    return reg


@pytest.fixture
def sql(registry: ToolRegistry) -> Iterator[Callable[[str], str]]:
    """sql_query as the agent calls it, in a thread of its own so that a regression cannot hang the suite."""
    func = registry.get("sql_query").func
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield lambda query: pool.submit(func, query).result(timeout=SAFETY_S)
    assert _workers(parent=os.getpid()) == [], "a query worker outlived its call"


def _stat(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields if WORKER.encode() in cmdline and fields[0] != "Z" else None


def _workers(*, parent: int | None = None, session: int | None = None) -> list[int]:
    """Live sql_query worker processes that are children of `parent` or members of `session`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat(pid)
        if fields is None:
            continue
        ppid, sid = int(fields[1]), int(fields[3])
        if (parent is not None and ppid == parent) or (session is not None and sid == session):
            found.append(int(pid))
    return found


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SAFETY_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)  # polling /proc: there is no event to wait on for another process appearing


def test_printf_with_a_huge_precision_is_refused_before_it_runs(sql: Callable[[str], str]) -> None:
    out = sql(PRINTF)
    assert out.startswith("Refused: the SQL function printf() is not allowed"), out
    assert "ROUND(x, 2)" in out  # what to use instead
    assert sql("SELECT format('%.*c', 2000000000, 'x')").startswith("Refused: the SQL function format()")


@pytest.mark.parametrize(("function", "instead"), [("zeroblob", "X'0000'"), ("randomblob", "random()")])
def test_blobs_of_any_size_are_refused(sql: Callable[[str], str], function: str, instead: str) -> None:
    out = sql(f"SELECT length({function}(2000000000))")
    assert out.startswith(f"Refused: the SQL function {function}() is not allowed"), out
    assert instead in out


def test_a_value_past_the_length_limit_is_refused_with_what_to_do(sql: Callable[[str], str]) -> None:
    out = sql("SELECT group_concat(a.name || b.name) FROM customers a, customers b")
    assert out.startswith("Refused: the query builds a text or blob longer than the 1,000,000 bytes"), out
    assert "fewer rows" in out


def test_one_slow_builtin_call_is_killed_at_the_limit(sql: Callable[[str], str]) -> None:
    out = sql(SLOW_BUILTIN)
    assert out.startswith("Query stopped: it ran past the 2 s limit and was killed."), out
    assert "simplify it" in out
    # The next query gets a fresh worker and a right answer.
    assert "| 4 |" in sql("SELECT COUNT(DISTINCT region) FROM sales")


def test_a_recursive_cte_that_never_ends_is_stopped_with_how_to_end_it(sql: Callable[[str], str]) -> None:
    out = sql(ENDLESS_CTE)
    assert out.startswith("Query stopped:") and "2 s limit" in out, out
    assert "WITH RECURSIVE query must end itself" in out and "WHERE n < 100" in out


def test_a_recursive_cte_that_hoards_memory_is_stopped(sql: Callable[[str], str]) -> None:
    out = sql(HOARDING_CTE)
    assert out.startswith("Query stopped:"), out
    assert "WITH RECURSIVE query must end itself" in out


def test_normal_queries_still_work_and_stay_read_only(sql: Callable[[str], str]) -> None:
    out = sql(
        "SELECT region, ROUND(SUM(revenue), 2) AS revenue FROM sales WHERE quarter = '2025-Q3' "
        "GROUP BY region ORDER BY region"
    )
    assert out.splitlines()[0] == "| region | revenue |" and "| EMEA |" in out
    before = sql("SELECT COUNT(*), ROUND(SUM(total), 2) FROM orders")
    for statement in (
        "DELETE FROM orders",
        "WITH d AS (SELECT 1) UPDATE orders SET total = 0",
        "SELECT 1; DROP TABLE orders",
        "PRAGMA writable_schema = 1",
        "ATTACH DATABASE ':memory:' AS other",
        "SELECT load_extension('/tmp/evil')",
    ):
        assert sql(statement).startswith("Refused:"), statement
    assert sql("SELECT COUNT(*), ROUND(SUM(total), 2) FROM orders") == before
    assert "customer_id" in sql("PRAGMA table_info(orders)")


async def test_stopping_the_run_kills_the_query_worker(
    registry: ToolRegistry, write: Callable[[str, str], Path]
) -> None:
    team = write("team.yaml", team_yaml(roles=("analyst",), tools={"analyst": ["sql_query"]}))
    script = write(
        "script.yaml",
        json.dumps({"roles": {"analyst": [{"tool": "sql_query", "args": {"query": SLOW_BUILTIN}}, "after"]}}),
    )
    conv = Conversation(team, model=f"scripted:{script}", registry=registry)
    run = conv.start("Find it")
    stopper: list[asyncio.Task[None]] = []

    async def stop_once_the_worker_runs() -> None:
        await asyncio.to_thread(_wait_for, lambda: bool(_workers(parent=os.getpid())), "the query worker")
        run.stop()

    def on_event(ev: Event) -> None:
        if isinstance(ev, ToolCallEvent):
            stopper.append(asyncio.create_task(stop_once_the_worker_runs()))

    events = await asyncio.wait_for(collect(run, on_event), SAFETY_S)
    await asyncio.wait_for(stopper[0], SAFETY_S)
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "stopped"
    await asyncio.to_thread(_wait_for, lambda: not _workers(parent=os.getpid()), "the worker to be killed")


class _Host:
    """The little of a conversation a bound tool needs: a workspace, no approvals, no file reports."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace

    def context_for(self, role: str) -> RunContext:
        return RunContext(workspace=self.workspace, role=role)

    def request_approval(self, *_args: object) -> asyncio.Future[tuple[bool, str]]:
        approved = asyncio.get_running_loop().create_future()
        approved.set_result((True, ""))
        return approved

    def files_written(self, *_args: object) -> None:
        pass


async def test_a_cancelled_call_kills_its_worker_and_says_so(registry: ToolRegistry, tmp_path: Path) -> None:
    tool = BoundTool(registry.get("sql_query"), "analyst", _Host(tmp_path))
    token = CancellationToken()
    call = asyncio.create_task(tool.run_json({"query": SLOW_BUILTIN}, token, call_id="c1"))
    await asyncio.to_thread(_wait_for, lambda: bool(_workers(parent=os.getpid())), "the query worker")
    token.cancel()
    out = await asyncio.wait_for(call, SAFETY_S)
    assert out == "Query stopped: the run was stopped before the query finished."
    assert _workers(parent=os.getpid()) == []


def _cli(team: Path, script: Path, **popen: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.Popen(
        [PARLEY, "run", str(team), "Find it", "--model", f"scripted:{script}", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
        **popen,  # type: ignore[call-overload]
    )


def _script(write: Callable[[str, str], Path], *queries: str) -> Path:
    steps: list[object] = [{"tool": "sql_query", "args": {"query": q}} for q in queries]
    return write("script.yaml", json.dumps({"roles": {"analyst": [*steps, "DONE"]}}))


@pytest.fixture
def team(write: Callable[[str, str], Path]) -> Path:
    return write(
        "team.yaml",
        team_yaml(roles=("analyst",), max_turns=4, stop_text="DONE", tools={"analyst": ["sql_query"]}),
    )


@pytest.mark.parametrize(
    ("query", "answer"),
    [
        (PRINTF, "Refused: the SQL function printf() is not allowed"),
        (SLOW_BUILTIN, "Query stopped: it ran past the 2 s limit and was killed."),
    ],
    ids=["printf", "slow-builtin"],
)
def test_three_in_a_row_from_the_cli_each_end_at_the_limit(
    team: Path, write: Callable[[str, str], Path], query: str, answer: str
) -> None:
    proc = _cli(team, _script(write, query, query, query), start_new_session=True)
    out, err = proc.communicate(timeout=SAFETY_S)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    results = [ev["content"] for ev in events if ev["type"] == "tool_result"]
    assert len(results) == 3 and all(r.startswith(answer) for r in results), results
    assert events[-1]["type"] == "result" and events[-1]["stop_reason"] == "stop_text"
    assert _workers(session=proc.pid) == []


def test_a_killed_parley_leaves_no_query_worker_behind(team: Path, write: Callable[[str, str], Path]) -> None:
    proc = _cli(team, _script(write, SLOW_BUILTIN), start_new_session=True)
    try:
        _wait_for(lambda: bool(_workers(session=proc.pid)), "the query worker to start")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=SAFETY_S)
        _wait_for(lambda: not _workers(session=proc.pid), "the orphaned worker to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
