"""run_python: a separate, limited process without the parent's secrets or network; stopped on time and on cancel."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from parley import sandbox
from parley.tools import RunContext, ToolRegistry, use_context

ROOT = Path(__file__).resolve().parent.parent
Run = Callable[..., Awaitable[str]]


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[RunContext]:
    context = RunContext(workspace=tmp_path / "ws", role="coder")
    with use_context(context):
        yield context


@pytest.fixture
def run(reg: ToolRegistry, ctx: RunContext) -> Run:
    found = sandbox.probe()
    if isinstance(found, sandbox.Missing):  # CI installs bubblewrap; elsewhere say what is missing
        pytest.skip(f"this machine cannot confine code, and run_python refuses to run it: {found}")
    return reg.get("run_python").func


def test_the_tool_needs_approval(reg: ToolRegistry) -> None:
    tooldef = reg.get("run_python")
    assert tooldef.approval and tooldef.family == "code"


async def test_output_and_exit_code_are_reported(run: Run) -> None:
    out = await run("import sys\nprint('hello', 6 * 7)\nprint('careful', file=sys.stderr)\nexit(3)")
    assert out == "Exit code: 3\n--- stdout ---\nhello 42\n--- stderr ---\ncareful"
    out = await run("1 / 0")
    assert 'File "main.py", line 1' in out and "ZeroDivisionError" in out and "Exit code: 1" in out
    out = await run("print('x' * 25_000)")
    assert "… 15,001 more characters" in out


async def test_the_environment_is_empty(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-leak")
    monkeypatch.setenv("PARLEY_SOMETHING", "parent-only")
    out = await run(
        "import os, sys\nprint(sorted(os.environ))\nprint(sys.path)\nprint(os.environ['HOME'] == os.getcwd())"
    )
    assert "['HOME', 'LANG', 'PATH', 'PYTHONDONTWRITEBYTECODE']" in out
    assert "sk-do-not-leak" not in out and "PARLEY_SOMETHING" not in out
    assert ".venv" not in out and "site-packages" not in out
    assert out.endswith("True")


async def test_an_endless_loop_is_stopped(run: Run) -> None:
    start = time.monotonic()
    out = await run("while True:\n    pass", timeout_s=1)
    assert out.startswith("Error: timed out after 1 s")
    assert time.monotonic() - start < 5


def _gone(pid: int) -> bool:
    """No such process, or a zombie waiting for a parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _running(marker: str) -> list[int]:
    """Processes on this machine (seen from outside the sandbox) whose command line has `marker` as an argument."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def test_a_sleeping_process_and_its_children_are_stopped(run: Run, ctx: RunContext) -> None:
    # The child's pid as the code sees it is its pid inside the sandbox's own PID namespace, meaningless out
    # here: the child is found in this machine's process table by a unique argument instead.
    marker = f"{30 + random.random():.9f}"
    code = (
        "import subprocess, time\n"
        f"child = subprocess.Popen(['sleep', '{marker}'])\n"
        "open('out/child.pid', 'w').write(str(child.pid))\n"
        "time.sleep(30)\n"
    )
    # 5 s: the sandbox, the interpreter and the child must start inside the limit, on a busy machine too.
    call = asyncio.create_task(run(code, timeout_s=5))
    for _ in range(200):
        if _running(marker) or call.done():
            break
        await asyncio.sleep(0.05)
    assert _running(marker), "the child did not start"
    out = await call
    assert out.startswith("Error: timed out after 5 s; the process was stopped.")
    assert int((ctx.workspace / "runs" / "1" / "child.pid").read_text()) > 0
    for _ in range(200):
        if all(_gone(pid) for pid in _running(marker)):
            break
        await asyncio.sleep(0.05)
    assert all(_gone(pid) for pid in _running(marker))


async def test_memory_is_limited(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    out = await run("block = bytearray(2 * 1024**3)\nprint('allocated')")
    assert out.startswith("Error: the code ran out of memory (limit 512 MB).")
    assert "allocated" not in out
    monkeypatch.setenv("PARLEY_SANDBOX_MEMORY_MB", "128")
    out = await run("block = bytearray(200 * 1024**2)")
    assert out.startswith("Error: the code ran out of memory (limit 128 MB).")


async def test_file_size_is_limited(run: Run, ctx: RunContext) -> None:
    code = "with open('out/big.bin', 'wb') as f:\n    f.write(b'0' * (100 * 1024 * 1024))\nprint('DONE')"
    out = await run(code)
    assert out.startswith("Error: the code tried to write a file larger than the 50 MB limit.")
    assert "DONE" not in out
    # The 50 MB written before the limit hit is over what is copied back (20 MB).
    assert "Nothing copied from out/ (1 skipped" in out
    assert not (ctx.workspace / "runs").exists()


async def test_the_network_is_cut_off(run: Run) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "    print('connected')\n"
            "except OSError as exc:\n"
            "    print('blocked', exc)\n"
        )
        out = await run(code)
    if "network not isolated on this machine" in out:
        pytest.skip("this machine does not allow network namespaces: the sandbox says so in its result")
    assert "blocked" in out and "connected" not in out


async def test_files_in_out_are_copied_to_the_workspace(run: Run, ctx: RunContext) -> None:
    code = (
        "import os\n"
        "os.makedirs('out/charts')\n"
        "open('out/summary.txt', 'w').write('EMEA +85%')\n"
        "open('out/charts/q3.csv', 'w').write('region,growth\\nEMEA,85\\n')\n"
        "os.symlink('/etc/passwd', 'out/passwd')\n"
        "open('scratch.txt', 'w').write('not copied')\n"
    )
    out = await run(code)
    assert "copied to runs/1/: charts/q3.csv (22 bytes), summary.txt (9 bytes); 1 skipped" in out
    runs = ctx.workspace / "runs"
    assert (runs / "1" / "summary.txt").read_text() == "EMEA +85%"
    assert (runs / "1" / "charts" / "q3.csv").exists()
    assert sorted(p.name for p in (runs / "1").rglob("*")) == ["charts", "q3.csv", "summary.txt"]
    assert "runs/2/" in await run("open('out/again.txt', 'w').write('2')")
    assert "copied" not in await run("print('nothing written')")


async def test_without_isolation_the_result_says_so(
    reg: ToolRegistry, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = sys.modules[reg.get("run_python").func.__module__]
    setup = await asyncio.to_thread(module._probe)
    monkeypatch.setattr(module, "_setup", dataclasses.replace(setup, network="none"))
    out = await run("print('ok')")
    assert out.endswith("ok\nNote: network not isolated on this machine.")


def _children() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.append(int(entry.name))
    return found


async def test_a_call_cancelled_while_its_sandbox_starts_still_ends_it(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped just as run_python starts its sandbox: the call ends, and the sandbox it started is killed.
    Starting the process is never cancelled half way: asyncio then kills what it forked and waits until its pipes
    close, and a bubblewrap PID 1 not yet set to die with its parent can hold them for good (seen once, under load:
    the call, and the run's Stop, never returned)."""
    real = asyncio.create_subprocess_exec
    forked: list[asyncio.subprocess.Process] = []
    cut_short: list[str] = []
    started, proceed = asyncio.Event(), asyncio.Event()

    async def starting(*args: object, **kwargs: object) -> asyncio.subprocess.Process:
        proc = await real(*args, **kwargs)  # type: ignore[arg-type]
        forked.append(proc)
        started.set()
        try:
            await proceed.wait()  # still starting, as far as the call knows, when it is cancelled
        except asyncio.CancelledError:
            cut_short.append("the start of the process was cancelled")
            raise
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", starting)
    task = asyncio.create_task(run("import time\nprint('started', flush=True)\ntime.sleep(60)", timeout_s=60))
    try:
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        await asyncio.sleep(0)  # the cancel reaches the call while its sandbox is starting
        proceed.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        assert cut_short == []
        assert forked[0].returncode is not None, "the sandbox the call started is ended with it"
    finally:
        proceed.set()
        for proc in forked:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_cancelling_the_call_kills_the_process(run: Run) -> None:
    before = set(_children())
    task = asyncio.create_task(run("import time\nprint('started', flush=True)\ntime.sleep(60)", timeout_s=60))
    for _ in range(100):
        await asyncio.sleep(0.05)
        started = set(_children()) - before
        if started:
            break
    assert started, "the sandboxed process did not start"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(_gone(pid) for pid in started)
    for pid in started:  # reaped, not only dead
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
