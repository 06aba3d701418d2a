"""Run Python code in a sandbox (approval required): a separate, limited process without secrets or network.

What the sandbox enforces (Linux):

- a separate interpreter started as `python -I -S -B`: no parley site-packages, no user site, no
  `PYTHON*` variables; the standard library only;
- an empty environment except `PATH=/usr/bin:/bin`, `LANG=C.UTF-8`, `PYTHONDONTWRITEBYTECODE=1` and
  `HOME` (the run's own folder): no API keys or anything else of the parent's;
- a fresh temporary folder outside the workspace as working directory, deleted afterwards. Files the
  code writes under `out/` (relative to it) are copied into the workspace under `runs/<n>/`: regular
  files only, at most `MAX_COPY_FILES` files and `MAX_COPY_BYTES` bytes;
- resource limits (`setrlimit`): CPU time (the timeout), address space (512 MB, or
  `PARLEY_SANDBOX_MEMORY_MB`), file size (50 MB), processes, open files, no core dumps; its own session
  (`setsid`) so the whole process group is killed at the wall-clock timeout or when the call is cancelled;
- when parley runs as root, the code runs as `nobody` (uid/gid 65534) with no supplementary groups;
- no network: a new, empty network namespace (`unshare(CLONE_NEWNET)`, or with a user namespace when
  not root). Probed once; where the machine does not allow it, the result says "network not isolated".

Not isolated: the file system is visible with the rights of the user the code runs as (world-readable
files can be read), and Unix sockets on the file system can be reached.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import math
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from parley.tools import current_context, tool

MAX_OUTPUT = 10_000
"""Characters of stdout and of stderr shown; the rest is counted."""
MAX_TIMEOUT = 120.0
DEFAULT_MEMORY_MB = 512
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_NPROC = 64
MAX_NOFILE = 64
MAX_COPY_FILES = 100
MAX_COPY_BYTES = 20 * 1024 * 1024
NOBODY = 65534
PATH = "/usr/bin:/bin"

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_probe_lock = threading.Lock()
_setup: _Setup | None = None

# Runs the user's file as __main__. `-S` skips `site`, which is what defines exit() and quit().
RUNNER = """\
import builtins, sys, types
builtins.exit = builtins.quit = sys.exit
path = sys.argv[1]
del sys.argv[0]
with open(path, encoding="utf-8") as f:
    source = f.read()
main = sys.modules["__main__"] = types.ModuleType("__main__")
main.__file__ = path
exec(compile(source, path, "exec"), main.__dict__)
"""
_RUNNER_FRAME = f'  File "<string>", line {RUNNER.count(chr(10))}, in <module>\n'


@dataclass(frozen=True)
class _Setup:
    python: str
    """An interpreter the sandboxed user can execute."""
    network: str
    """How the network is cut off: "netns", "userns" or "none"."""
    drop: bool
    """Whether the code runs as nobody (parley runs as root)."""


def _unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _preexec(network: str, drop: bool, cpu_s: int, memory: int, nproc: int) -> Callable[[], None]:
    """What the child does between fork and exec. Everything it needs is imported by the parent."""
    uid, gid = os.getuid(), os.getgid()

    def setup() -> None:
        os.setsid()
        if network == "netns":
            _unshare(_CLONE_NEWNET)
        elif network == "userns":
            _unshare(_CLONE_NEWUSER | _CLONE_NEWNET)
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_NOFILE, MAX_NOFILE))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if drop:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)

    return setup


def _nproc_limit(drop: bool) -> int:
    """RLIMIT_NPROC counts every process of the user: a user's own limit must leave room for theirs."""
    if drop:
        return MAX_NPROC
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count + MAX_NPROC


def _candidates() -> list[str]:
    found = [getattr(sys, "_base_executable", ""), sys.executable, os.path.realpath(sys.executable)]
    found += [shutil.which(n, path="/usr/local/bin:/usr/bin:/bin") or "" for n in ("python3", "python3.11")]
    return [p for i, p in enumerate(found) if p and p not in found[:i]]


def _probe() -> _Setup | str:
    """Find, once, how to start a sandboxed interpreter here (or why it cannot be done)."""
    global _setup
    with _probe_lock:
        if _setup is not None:
            return _setup
        drop = os.geteuid() == 0
        modes = ["netns", "none"] if drop else ["netns", "userns", "none"]
        nproc = _nproc_limit(drop)
        last = "no Python interpreter found"
        for network in modes:
            for python in _candidates():
                try:
                    subprocess.run(
                        [python, "-I", "-S", "-B", "-c", "import socket"],
                        preexec_fn=_preexec(network, drop, 5, DEFAULT_MEMORY_MB << 20, nproc),
                        env={"PATH": PATH, "LANG": "C.UTF-8"},
                        cwd="/",
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=10,
                        check=True,
                    )
                except (OSError, subprocess.SubprocessError) as exc:
                    last = f"{python}: {type(exc).__name__}: {exc}"
                    continue
                _setup = _Setup(python=python, network=network, drop=drop)
                return _setup
        return last


def _memory_bytes() -> tuple[int, int]:
    try:
        mb = int(os.environ.get("PARLEY_SANDBOX_MEMORY_MB", DEFAULT_MEMORY_MB))
    except ValueError:
        mb = DEFAULT_MEMORY_MB
    mb = max(mb, 64)
    return mb, mb << 20


class _Capture:
    """Decode a stream as it comes, keep the first MAX_OUTPUT characters and the last few, count the rest."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.head = ""
        self.tail = ""
        self.dropped = 0

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final)
        room = MAX_OUTPUT - len(self.head)
        self.head += text[:room]
        self.dropped += max(len(text) - room, 0)
        self.tail = (self.tail + text)[-2000:]

    def render(self, script: Path) -> str:
        """The text kept, without the runner's own traceback frame and with the script called main.py."""
        text = self.head.replace(_RUNNER_FRAME, "").replace(f'"{script}"', '"main.py"')
        more = f"\n… {self.dropped:,} more characters" if self.dropped else ""
        return text.rstrip("\n") + more


async def _drain(stream: asyncio.StreamReader | None, capture: _Capture) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        capture.feed(chunk)
    capture.feed(b"", final=True)


def _prepare(code: str, drop: bool) -> tuple[Path, Path, Path]:
    base = Path(tempfile.mkdtemp(prefix="parley-run-"))
    base.chmod(0o711)
    script = base / "main.py"
    script.write_text(code, encoding="utf-8")
    script.chmod(0o644)
    work = base / "work"
    (work / "out").mkdir(parents=True)
    if drop:
        for d in (work, work / "out"):
            os.chown(d, NOBODY, NOBODY)
    work.chmod(0o700)
    return base, script, work


_SKIPPED = f"links, special files, or over {MAX_COPY_FILES} files or {MAX_COPY_BYTES >> 20} MB"


def _copy_out(out: Path, drop: bool, workspace: Path) -> str:
    """Copy the regular files under `out/` into the workspace's `runs/<n>/`; say what was copied."""
    files: list[tuple[Path, int]] = []
    skipped = 0
    total = 0
    for folder, dirs, names in os.walk(out, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder, name)
            st = path.lstat()
            foreign = not stat.S_ISREG(st.st_mode) or (drop and st.st_uid != NOBODY) or st.st_nlink > 1
            if foreign or len(files) >= MAX_COPY_FILES or total + st.st_size > MAX_COPY_BYTES:
                skipped += 1
            else:
                files.append((path, st.st_size))
                total += st.st_size
    if not files:
        return f"Nothing copied from out/ ({skipped} skipped: {_SKIPPED})." if skipped else ""
    files.sort()
    runs = workspace / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    n = max((int(p.name) for p in runs.iterdir() if p.name.isdigit()), default=0) + 1
    while True:
        try:
            (runs / str(n)).mkdir()
            break
        except FileExistsError:
            n += 1
    dest = runs / str(n)
    for path, _size in files:
        target = dest / path.relative_to(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    listed = ", ".join(f"{p.relative_to(out)} ({size:,} bytes)" for p, size in files)
    note = f"; {skipped} skipped ({_SKIPPED})" if skipped else ""
    return f"Files written to out/ were copied to runs/{n}/: {listed}{note}"


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _diagnose(rc: int, stderr: _Capture, timed_out: bool, timeout_s: float, memory_mb: int) -> str:
    if timed_out:
        return f"Error: timed out after {timeout_s:g} s; the process was stopped."
    if rc == -signal.SIGXCPU:
        return f"Error: timed out after {timeout_s:g} s (CPU time limit); the process was stopped."
    if rc == -signal.SIGKILL:
        return f"Error: the process was killed: CPU time ({timeout_s:g} s) or memory ({memory_mb} MB) limit."
    if rc != 0 and ("MemoryError" in stderr.tail or "[Errno 12]" in stderr.tail):
        return f"Error: the code ran out of memory (limit {memory_mb} MB)."
    if rc == -signal.SIGXFSZ or (rc != 0 and "[Errno 27]" in stderr.tail):
        return f"Error: the code tried to write a file larger than the {MAX_FILE_BYTES >> 20} MB limit."
    return ""


def _exit_status(rc: int | None) -> str:
    if rc is None:
        return "Exit code: none (stopped)"
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"Exit code: killed by {signal.Signals(-rc).name}"
    return f"Exit code: {rc}"


@tool(family="code", approval=True)
async def run_python(
    code: Annotated[str, "A complete Python program (standard library only); print what you want to see"],
    timeout_s: Annotated[float, "Seconds before the run is stopped (at most 120)"] = 10,
) -> str:
    """Run Python code in a sandbox (needs a human's approval) and return its exit code, stdout and stderr.

    Standard library only; no network; memory, time and file sizes are limited. Files the code
    writes under out/ (relative to its working directory) are copied to the workspace under runs/<n>/.
    """
    workspace = current_context().workspace
    try:
        timeout_s = min(max(float(timeout_s), 0.5), MAX_TIMEOUT)
    except (TypeError, ValueError):
        return "Refused: timeout_s must be a number of seconds."
    setup = await asyncio.to_thread(_probe)
    if isinstance(setup, str):
        return f"Error: cannot start a sandboxed Python on this machine ({setup})."
    memory_mb, memory = _memory_bytes()
    nproc = await asyncio.to_thread(_nproc_limit, setup.drop)
    base, script, work = await asyncio.to_thread(_prepare, code, setup.drop)
    out, err = _Capture(), _Capture()
    proc: asyncio.subprocess.Process | None = None
    readers: list[asyncio.Task[None]] = []
    timed_out = False
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                setup.python,
                "-I",
                "-S",
                "-B",
                "-c",
                RUNNER,
                str(script),
                cwd=work,
                env={"PATH": PATH, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(work)},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                preexec_fn=_preexec(setup.network, setup.drop, math.ceil(timeout_s), memory, nproc),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"Error: could not start the sandbox: {type(exc).__name__}: {exc}"
        readers = [
            asyncio.create_task(_drain(proc.stdout, out)),
            asyncio.create_task(_drain(proc.stderr, err)),
        ]
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
        _kill_group(proc)  # the timeout, or children left behind
        await proc.wait()
        await asyncio.wait(readers, timeout=2)
        copied = await asyncio.to_thread(_copy_out, work / "out", setup.drop, workspace)
    finally:
        if proc is not None and proc.returncode is None:  # cancelled: the run was stopped
            _kill_group(proc)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        for task in readers:
            task.cancel()
        shutil.rmtree(base, ignore_errors=True)
    rc = proc.returncode
    lines = [line for line in (_diagnose(rc, err, timed_out, timeout_s, memory_mb),) if line]
    lines.append(_exit_status(None if timed_out else rc))
    lines += ["--- stdout ---", out.render(script) or "(no output)"]
    if err.head:
        lines += ["--- stderr ---", err.render(script)]
    if copied:
        lines.append(copied)
    if setup.network == "none":
        lines.append("Note: network not isolated on this machine.")
    return "\n".join(lines)
