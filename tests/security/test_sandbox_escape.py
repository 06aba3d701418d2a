"""A hostile model's code in run_python, through the tool as parley calls it, with real processes: it cannot
outlive the call, see other calls, starve later calls, take more memory than its cap, read parley's data,
see or signal parley, or leave its code on disk when parley is killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from parley import sandbox
from parley.tools import RunContext, ToolRegistry, use_context

ROOT = Path(__file__).resolve().parent.parent.parent
Run = Callable[..., Awaitable[str]]


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[RunContext]:
    context = RunContext(workspace=tmp_path / "ws", role="coder")
    with use_context(context):
        yield context


@pytest.fixture
def run(reg: ToolRegistry, ctx: RunContext) -> Run:
    found = sandbox.probe()
    if isinstance(found, sandbox.Missing):
        pytest.skip(f"this machine cannot confine code, and run_python refuses to run it: {found}")
    return reg.get("run_python").func


async def test_without_bubblewrap_code_is_refused_not_run_unconfined(
    reg: ToolRegistry, ctx: RunContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = reg.get("run_python").func
    monkeypatch.setattr(sys.modules[run.__module__], "_setup", None)
    monkeypatch.setattr(sandbox, "_cache", None)
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    flag = tmp_path / "ran"
    flag.parent.chmod(0o777)
    out = await run(f"open({str(flag)!r}, 'w').write('ran')\nprint('ran')")
    assert out.startswith("Error: run_python does not run code unconfined")
    assert "bubblewrap (bwrap) not found: install bubblewrap: apt-get install bubblewrap" in out
    assert "ran" not in out.split("\n", 1)[0] and not flag.exists()


def _running(marker: str) -> list[int]:
    """Live processes on this machine (not zombies) with `marker` as one of their arguments."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() not in (entry / "cmdline").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique `sleep` argument; whatever still runs with it at the end is killed (the old sandbox leaked)."""
    value = f"{600 + random.random():.9f}"
    yield value
    for pid in _running(value):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _sleeper(marker: str) -> str:
    """Code that starts `sleep MARKER` in a session of its own, as a daemon would, and waits until it runs."""
    return (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.setsid()\n"
        f"    os.execvp('sleep', ['sleep', '{marker}'])\n"
        "for _ in range(500):\n"
        f"    if b'{marker}' in open(f'/proc/{{pid}}/cmdline', 'rb').read():\n"
        "        break\n"
        "    time.sleep(0.01)\n"
        "print('daemon started', flush=True)\n"
    )


async def test_a_daemon_does_not_outlive_the_call(run: Run, marker: str) -> None:
    out = await run(_sleeper(marker))
    assert "Exit code: 0" in out and "daemon started" in out
    assert _running(marker) == []


async def test_calls_cannot_see_each_others_files_tmp_or_processes(run: Run, marker: str) -> None:
    token = secrets.token_hex(8)
    first = (
        "import os, subprocess\n"
        f"open('/tmp/{token}', 'w').write('secret of the first call')\n"
        f"open('{token}.txt', 'w').write('secret of the first call')\n"
        "os.chmod('.', 0o755)\n"
        f"os.chmod('/tmp/{token}', 0o644); os.chmod('{token}.txt', 0o644)\n"
        "print(os.getcwd(), flush=True)\n"
        f"subprocess.run(['sleep', '{marker}'])\n"
    )
    call = asyncio.create_task(run(first, timeout_s=60))
    try:
        for _ in range(400):
            if _running(marker) or call.done():
                break
            await asyncio.sleep(0.05)
        assert _running(marker), f"the first call did not start: {call.result() if call.done() else ''}"
        second = (
            "import glob, os\n"
            f"for path in glob.glob('/tmp/**/*{token}*', recursive=True):\n"
            "    try:\n"
            "        print('READ', path, open(path).read())\n"
            "    except OSError as exc:\n"
            "        print('denied', path, exc)\n"
            "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
            "    try:\n"
            f"        if b'{marker}' in open(f'/proc/{{pid}}/cmdline', 'rb').read():\n"
            "            print('SEES', pid)\n"
            "    except OSError:\n"
            "        pass\n"
            "print('looked')\n"
        )
        out = await run(second)
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
    assert "looked" in out
    assert "secret of the first call" not in out and "READ" not in out and "SEES" not in out


async def test_each_call_has_an_identity_of_its_own(run: Run) -> None:
    if os.geteuid() != 0:
        pytest.skip(
            "a fresh uid per call needs parley to run as root; otherwise namespaces alone separate calls"
        )
    code = "import os\nprint('uid', os.getuid(), os.getgid(), os.getgroups())"
    first, second = await run(code), await run(code)
    assert first != second, "two calls ran as the same user"
    for out in (first, second):
        uid = int(out.split("uid ")[1].split()[0])
        assert uid not in (0, 65534) and uid >= sandbox.UID_BASE


async def test_leftover_processes_do_not_starve_later_calls(run: Run, marker: str) -> None:
    bomb = (
        "import subprocess\n"
        "started = 0\n"
        "try:\n"
        "    for _ in range(300):\n"
        f"        subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "        started += 1\n"
        "except OSError as exc:\n"
        "    print('stopped by', type(exc).__name__)\n"
        "print('started', started)\n"
    )
    out = await run(bomb)
    started = int(out.split("started ")[1].split()[0])
    assert started < 300, "no process cap at all"
    later = (
        "import subprocess\n"
        "children = [subprocess.Popen(['true']) for _ in range(20)]\n"
        "print('forked', sum(child.wait() == 0 for child in children))\n"
    )
    out = await run(later)
    assert "forked 20" in out and "Exit code: 0" in out
    assert _running(marker) == []


async def test_memory_is_capped_for_all_processes_together(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_SANDBOX_MEMORY_MB", "512")
    code = (
        "import subprocess, sys\n"
        "hold = \"import sys; block = b'x' * (200 << 20); print('held', flush=True); sys.stdin.read()\"\n"
        "kids = [subprocess.Popen([sys.executable, '-c', hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE)"
        " for _ in range(4)]\n"
        "held = sum(kid.stdout.readline().strip() == b'held' for kid in kids)\n"
        # Each child has allocated or died by now: those alive hold their 200 MB at the same time. (One may have
        # said 'held' and been killed since, to make room for the next: `held` alone proves nothing.)
        "alive = sum(kid.poll() is None for kid in kids)\n"
        "for kid in kids:\n"
        "    kid.stdin.close()\n"
        "    kid.wait()\n"
        "print('children holding 200 MB each at once:', alive)\n"
    )
    out = await run(code, timeout_s=60)
    at_once = re.search(r"children holding 200 MB each at once: (\d+)", out)
    assert at_once is None or int(at_once.group(1)) <= 2, out  # 512 MB cannot hold three
    assert out.startswith("Error: the code ran out of memory (limit 512 MB for all its processes and files)")


def _loose_data_folder(workspace: Path) -> Path:
    data = Path(tempfile.mkdtemp(prefix="parley-data-test-"))
    data.chmod(0o755)
    (data / "auth_secret").write_text("the sign-in secret")
    (data / "auth_secret").chmod(0o644)
    workspace.mkdir(parents=True)
    (workspace / "notes.txt").write_text("another file of the conversation")
    return data


async def test_the_code_cannot_read_parleys_data(
    run: Run, ctx: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A data folder as an older parley or a loose umask left it: world-readable. The sandbox must not depend
    # on the modes: the folder is simply not there for the code.
    data = _loose_data_folder(ctx.workspace)
    secret = data / "auth_secret"
    try:
        monkeypatch.setenv("PARLEY_DATA_DIR", str(data))
        targets = [secret, ctx.workspace / "notes.txt", Path(sys.prefix) / "pyvenv.cfg", Path.home()]
        code = "import os\n" + "".join(
            f"try:\n    print('READ', os.listdir({str(t)!r}) if os.path.isdir({str(t)!r}) else open({str(t)!r}).read())\n"
            f"except OSError as exc:\n    print('no', type(exc).__name__)\n"
            for t in targets
        )
        out = await run(code)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    assert "READ" not in out and "the sign-in secret" not in out and "another file" not in out
    assert out.count("no FileNotFoundError") == len(targets), out


async def test_the_code_cannot_see_or_signal_parley(run: Run) -> None:
    code = (
        "import os, signal\n"
        f"for pid in ({os.getpid()}, {os.getppid()}):\n"
        "    try:\n"
        "        os.kill(pid, 0)\n"
        "        print('SEES', pid)\n"
        "    except OSError as exc:\n"
        "        print(type(exc).__name__)\n"
    )
    out = await run(code)
    # Not "permission denied" (the process is there, but another user's): parley is not in the code's world.
    assert out.count("ProcessLookupError") == 2 and "SEES" not in out


# --- parley itself as a separate process ----------------------------------------------------------------

HARNESS = """\
import asyncio, os, sys
from pathlib import Path
sys.path[:0] = sys.argv[3:]
from parley.tools import RunContext, ToolRegistry, use_context
run = ToolRegistry.discover([Path(sys.argv[3]) / "tools"]).get("run_python").func
code = sys.stdin.read().replace("PARLEY_PID", str(os.getpid()))
with use_context(RunContext(workspace=Path(sys.argv[1]), role="coder")):
    print(asyncio.run(run(code, timeout_s=float(sys.argv[2]))), flush=True)
"""


def _parley(workspace: Path, code: str, timeout_s: float, **popen: object) -> subprocess.Popen[str]:
    """parley in a process of its own, running one run_python call."""
    paths = [str(ROOT), *(p for p in sys.path if p.endswith("site-packages"))]
    proc = subprocess.Popen(
        [popen.pop("python", sys.executable), "-c", HARNESS, str(workspace), str(timeout_s), *paths],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[call-overload]
    )
    assert proc.stdin is not None
    proc.stdin.write(code)
    proc.stdin.close()
    proc.stdin = None  # sent: communicate() must not flush it again
    return proc


def _leftover_run_folders() -> list[str]:
    return [name for name in os.listdir(tempfile.gettempdir()) if name.startswith("parley-run-")]


def test_killing_parley_kills_the_code_and_leaves_no_files(tmp_path: Path, marker: str) -> None:
    if isinstance(sandbox.probe(), sandbox.Missing):
        pytest.skip(f"this machine cannot confine code: {sandbox.probe()}")
    before = set(_leftover_run_folders())
    parley = _parley(tmp_path / "ws", _sleeper(marker) + "import time\ntime.sleep(600)\n", 100)
    try:
        for _ in range(400):
            if _running(marker) or parley.poll() is not None:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                parley.wait(0.05)
        assert _running(marker), (
            f"the code did not start: {parley.stderr.read() if parley.poll() is not None else ''}"
        )
        assert set(_leftover_run_folders()) == before, "the code is on disk while it runs"
        parley.kill()
        parley.wait()
        for _ in range(600):  # the kernel tears the sandbox down as parley's death reaches it (30 s at most)
            if not _running(marker):
                break
            time.sleep(0.05)
        assert _running(marker) == []
        assert set(_leftover_run_folders()) == before
    finally:
        setup = sandbox.probe()
        if isinstance(setup, sandbox.Setup):
            sandbox.remove_stale(setup)  # the killed parley's empty cgroup, as the next parley start does
        if parley.poll() is None:
            parley.kill()
            parley.wait()


@pytest.fixture
def other_user(tmp_path: Path) -> Iterator[tuple[int, list[Path]]]:
    """A non-root user, with a cgroup of its own delegated to it (how a service manager would: chowned)."""
    if os.geteuid() != 0:
        pytest.skip("making another user and delegating a cgroup to it needs root")
    if isinstance(sandbox.probe(), sandbox.Missing):
        pytest.skip(f"this machine cannot confine code: {sandbox.probe()}")
    uid = 40000 + random.randrange(10000)
    name = f"parley-test-{secrets.token_hex(4)}"
    setup = sandbox.probe()
    assert isinstance(setup, sandbox.Setup)
    bases = [Path(base) / name for base in setup.cgroup_bases]
    made: list[Path] = []
    try:
        for path in bases:
            path.mkdir()
            made.append(path)
            for item in (path, path / "cgroup.procs", path / "tasks", path / "cgroup.subtree_control"):
                if item.exists():
                    os.chown(item, uid, uid)
        yield uid, bases
    finally:
        for path in reversed(made):
            for child in path.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                path.rmdir()


def test_as_a_normal_user_the_code_cannot_signal_parley(other_user: tuple[int, list[Path]]) -> None:
    out = _as_user(*other_user, "cannot signal parley: ProcessLookupError")
    assert "SIGNALLED" not in out


def test_as_a_normal_user_without_a_cgroup_code_is_refused(other_user: tuple[int, list[Path]]) -> None:
    uid, _delegated = other_user
    out = _as_user(uid, [], "Error: run_python does not run code unconfined")
    assert "no cgroup for total memory and process caps" in out and "Delegate=yes" in out
    assert "SIGNALLED" not in out and "cannot signal" not in out


def _others_can_run(path: str) -> bool:
    """Whether a user other than its owner can execute `path` (every folder on the way searchable)."""
    target = Path(path)
    try:
        return target.stat().st_mode & 0o001 != 0 and all(p.stat().st_mode & 0o001 for p in target.parents)
    except OSError:
        return False


def _as_user(uid: int, cgroups: list[Path], expected: str) -> str:
    """parley run as another, non-root user (in `cgroups`), trying to signal itself from run_python."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    python = next(
        (
            p
            for p in (os.path.realpath(sys.executable), f"/usr/bin/{version}", f"/usr/local/bin/{version}")
            if _others_can_run(p)
        ),
        None,
    )
    if python is None:
        pytest.skip(f"no {version} that another user can run with this virtualenv's packages")
    home = Path(tempfile.mkdtemp(prefix="parley-user-test-"))
    os.chown(home, uid, uid)

    def become_user() -> None:
        for path in cgroups:
            Path(path, "cgroup.procs").write_text(str(os.getpid()))
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    code = (
        "import os, signal\n"
        "try:\n"
        "    os.kill(PARLEY_PID, signal.SIGKILL)\n"
        "    print('SIGNALLED parley')\n"
        "except OSError as exc:\n"
        "    print('cannot signal parley:', type(exc).__name__)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "PARLEY_DATA_DIR": str(home / "data"),
        "LANG": "C.UTF-8",
    }
    parley = _parley(home / "ws", code, 30, python=python, env=env, cwd=str(home), preexec_fn=become_user)
    try:
        out, err = parley.communicate(timeout=120)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert parley.returncode == 0, f"parley died (exit {parley.returncode}): {out}{err}"
    assert expected in out, out + err
    return out
