"""Run Python code in a sandbox (approval required): confined by bubblewrap and a cgroup, see parley/sandbox.py.

What each call gets (Linux, with bubblewrap, user namespaces and a usable cgroup; otherwise the tool
refuses to run code and says what is missing):

- a separate interpreter started as `python -I -S -B`: no site-packages, no user site, no `PYTHON*`
  variables; the standard library only; parley's virtualenv is not even mounted;
- an empty environment except `PATH=/usr/bin:/bin`, `LANG=C.UTF-8`, `PYTHONDONTWRITEBYTECODE=1` and
  `HOME` (the run's own folder): no API keys or anything else of the parent's;
- its own PID, mount, user, IPC and UTS namespaces: it sees only its own processes, a read-only `/usr`,
  the interpreter and empty tmpfs for `/tmp` and for its working folder (`/sandbox/work`); parley's data
  folder, home folders and other calls are not mounted. Files the code writes under `out/` (relative to
  its working folder) are copied into the workspace under `runs/<n>/`: regular files only, at most
  `MAX_COPY_FILES` files and `MAX_COPY_BYTES` bytes. Nothing of the run is ever written to the host's disk;
- every process of the call dies with it: at the end of the code, at the wall-clock timeout, when the
  call is cancelled, and when parley itself dies;
- a cgroup of its own: 512 MB (`PARLEY_SANDBOX_MEMORY_MB`) of memory for all its processes and files
  together, and `MAX_NPROC` processes; per process: CPU time (the timeout), address space, file size
  (50 MB), open files, no core dumps;
- a uid of its own when parley runs as root;
- no network: a new network namespace. Probed once; where the kernel does not allow it, the result says
  "network not isolated".
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import math
import os
import resource
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from parley import sandbox
from parley.paths import inside
from parley.sandbox import SANDBOX, Missing, Setup, new_cgroup
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
MAX_HEADER = 1 << 20
STOP_GRACE_S = 10.0
"""After the timeout: how long the sandbox has to stop the code and hand over out/ before it is killed."""
PATH = "/usr/bin:/bin"
SCRIPT = f"{SANDBOX}/main.py"
WORK = f"{SANDBOX}/work"

_setup: Setup | None = None

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

# PID 1 of the sandbox. It starts the code, waits for it, kills whatever the code left running (as PID 1 it
# can: kill(-1) reaches every other process of the namespace), then sends parley the code's exit status and
# the files under out/ on its descriptor. Closing its stdin (parley's timeout) stops the code early. It runs
# with the code's own rights, so parley trusts nothing it sends: see _unpack and _store.
SUPERVISOR = """\
import json, os, signal, stat, sys, threading
out_fd, max_files, max_bytes = (int(a) for a in sys.argv[1:4])
python, runner, script, work = sys.argv[4:8]
try:
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: the code cannot trace this or open its fds
except Exception:
    pass
env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "HOME": work}
child = os.fork()
if child == 0:
    try:
        os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
        for fd in map(int, os.listdir("/proc/self/fd")):
            if fd > 2:
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.execve(python, [python, "-I", "-S", "-B", "-c", runner, script], env)
    finally:
        os._exit(127)

def stop():
    while os.read(0, 4096):
        pass
    os.kill(-1, signal.SIGKILL)

threading.Thread(target=stop, daemon=True).start()
status = None
while status is None:
    try:
        pid, st = os.waitpid(-1, 0)
    except ChildProcessError:
        break
    if pid == child:
        status = st
while True:
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        break
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        pass
rc = None if status is None else -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
out = os.path.join(work, "out")
files, data, skipped, total = [], [], 0, 0
for folder, dirs, names in os.walk(out):
    dirs.sort()
    for name in sorted(names):
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                raise ValueError
            if len(files) >= max_files or total + st.st_size > max_bytes:
                raise ValueError
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
                content = f.read(st.st_size + 1)
            if len(content) != st.st_size:
                raise ValueError
        except (OSError, ValueError):
            skipped += 1
            continue
        files.append([os.path.relpath(path, out), len(content)])
        data.append(content)
        total += len(content)
with os.fdopen(out_fd, "wb") as w:
    w.write(json.dumps({"rc": rc, "skipped": skipped, "files": files}).encode() + b"\\n")
    for content in data:
        w.write(content)
"""


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

    def render(self) -> str:
        """The text kept, without the runner's own traceback frame and with the script called main.py."""
        text = self.head.replace(_RUNNER_FRAME, "").replace(f'"{SCRIPT}"', '"main.py"')
        more = f"\n… {self.dropped:,} more characters" if self.dropped else ""
        return text.rstrip("\n") + more


async def _drain(stream: asyncio.StreamReader | None, capture: _Capture) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        capture.feed(chunk)
    capture.feed(b"", final=True)


async def _open_report(fd: int) -> tuple[asyncio.ReadTransport, asyncio.StreamReader]:
    """Read the pipe the sandbox's PID 1 reports on; the transport owns (and closes) the descriptor."""
    reader = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", 0)
    try:
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
    except BaseException:
        pipe.close()
        raise
    return transport, reader


async def _collect(reader: asyncio.StreamReader, limit: int) -> bytes:
    """Everything the sandbox sends until it closes the pipe, kept up to `limit` bytes."""
    kept = bytearray()
    while chunk := await reader.read(65536):
        kept += chunk[: max(limit - len(kept), 0)]
    return bytes(kept)


@dataclass
class _Report:
    """What the sandbox's PID 1 said: the code's exit status and the files under out/ (unchecked)."""

    rc: int | None = None
    skipped: int = 0
    files: list[tuple[str, bytes]] = field(default_factory=list)


def _unpack(blob: bytes) -> _Report | None:
    """Parse the sandbox's report, trusting none of it: a bad header is no report, a short body fewer files."""
    head, sep, body = blob.partition(b"\n")
    if not sep or len(head) > MAX_HEADER:
        return None
    try:
        meta = json.loads(head)
    except (ValueError, RecursionError):
        return None
    if not isinstance(meta, dict):
        return None
    report = _Report()
    rc = meta.get("rc")
    if type(rc) is int and -64 < rc < 256:
        report.rc = rc
    skipped = meta.get("skipped")
    if type(skipped) is int and 0 <= skipped < 1 << 31:
        report.skipped = skipped
    entries = meta.get("files")
    offset = 0
    for entry in entries if isinstance(entries, list) else []:
        ok = (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and type(entry[1]) is int
        )
        if not ok or entry[1] < 0 or offset + entry[1] > min(len(body), MAX_COPY_BYTES):
            break
        if len(report.files) >= MAX_COPY_FILES:
            report.skipped += 1
            continue
        report.files.append((entry[0], body[offset : offset + entry[1]]))
        offset += entry[1]
    return report


def _safe_name(rel: str) -> bool:
    parts = rel.split("/")
    return 0 < len(rel) <= 1024 and "\x00" not in rel and all(p not in ("", ".", "..") for p in parts)


_SKIPPED = f"links, special files, or over {MAX_COPY_FILES} files or {MAX_COPY_BYTES >> 20} MB"


def _store(report: _Report, workspace: Path) -> str:
    """Write the files the sandbox sent into the workspace's `runs/<n>/`; say what was copied."""
    skipped = report.skipped
    files = sorted(report.files, key=lambda f: f[0].split("/"))
    if not files:
        return f"Nothing copied from out/ ({skipped} skipped: {_SKIPPED})." if skipped else ""
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
    written: list[tuple[str, int]] = []
    for rel, content in files:
        try:
            if not _safe_name(rel):
                raise ValueError(rel)
            target = inside(dest, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except (OSError, ValueError):
            skipped += 1
            continue
        with os.fdopen(fd, "wb") as dst:
            dst.write(content)
        written.append((rel, len(content)))
    if not written:
        return f"Nothing copied from out/ ({skipped} skipped: {_SKIPPED})."
    listed = ", ".join(f"{rel} ({size:,} bytes)" for rel, size in written)
    note = f"; {skipped} skipped ({_SKIPPED})" if skipped else ""
    return f"Files written to out/ were copied to runs/{n}/: {listed}{note}"


def _probe() -> Setup | Missing:
    """How calls are confined here (found once; a test may set `_setup`)."""
    global _setup
    if _setup is not None:
        return _setup
    found = sandbox.probe()
    if isinstance(found, Setup):
        _setup = found
    return found


def _memory_bytes() -> tuple[int, int]:
    try:
        mb = int(os.environ.get("PARLEY_SANDBOX_MEMORY_MB", DEFAULT_MEMORY_MB))
    except ValueError:
        mb = DEFAULT_MEMORY_MB
    mb = max(mb, 64)
    return mb, mb << 20


def _limits(cpu_s: int, memory: int) -> Callable[[], None]:
    """Per-process limits, inherited by everything in the sandbox (the totals come from the cgroup)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
        resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_NOFILE, MAX_NOFILE))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _code_fd(code: str) -> int:
    """The code in an anonymous memory file: bubblewrap copies it into the sandbox, nothing touches the disk."""
    fd = os.memfd_create("parley-code", os.MFD_CLOEXEC)
    data = memoryview(code.encode("utf-8", "surrogateescape"))
    while data:
        data = data[os.write(fd, data) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _diagnose(
    rc: int | None,
    stderr: _Capture,
    timed_out: bool,
    timeout_s: float,
    memory_mb: int,
    counters: tuple[int, int],
) -> str:
    """One line on why the code failed, if a limit explains it. `counters`: the cgroup's OOM kills and
    refused forks."""
    killed, refused = counters
    if timed_out:
        return f"Error: timed out after {timeout_s:g} s; the process was stopped."
    if rc == -signal.SIGXCPU:
        return f"Error: timed out after {timeout_s:g} s (CPU time limit); the process was stopped."
    if killed:
        return (
            f"Error: the code ran out of memory (limit {memory_mb} MB for all its processes and files); "
            f"{killed} process{'es' if killed > 1 else ''} killed."
        )
    if rc == -signal.SIGKILL:
        return f"Error: the process was killed: CPU time ({timeout_s:g} s) or memory ({memory_mb} MB) limit."
    if rc and ("MemoryError" in stderr.tail or "[Errno 12]" in stderr.tail):
        return f"Error: the code ran out of memory (limit {memory_mb} MB)."
    if rc == -signal.SIGXFSZ or (rc and "[Errno 27]" in stderr.tail):
        return f"Error: the code tried to write a file larger than the {MAX_FILE_BYTES >> 20} MB limit."
    if rc and refused:
        return f"Error: the code tried to run more than {MAX_NPROC} processes at once (limit)."
    return ""


def _exit_status(rc: int | None) -> str:
    if rc is None:
        return "Exit code: none (stopped)"
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"Exit code: killed by {signal.Signals(-rc).name}"
    return f"Exit code: {rc}"


async def _wait(proc: asyncio.subprocess.Process, timeout_s: float) -> bool:
    """Wait for the sandbox to end; at the timeout, have it stop the code (and kill it if it does not)."""
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
        return False
    except TimeoutError:
        pass
    if proc.stdin is not None:
        proc.stdin.close()  # the sandbox's PID 1 stops the code, then hands over out/
    try:
        await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    return True


def _refusal(missing: Missing) -> str:
    lines = [
        "Error: run_python does not run code unconfined, and this machine lacks what confining it needs:"
    ]
    lines += [f"- {what}: {how}" for what, how in missing.items]
    lines.append("`parley doctor` lists which sandbox guarantees hold here.")
    return "\n".join(lines)


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
    if isinstance(setup, Missing):
        return _refusal(setup)
    memory_mb, memory = _memory_bytes()
    try:
        cgroup = await asyncio.to_thread(new_cgroup, setup, memory, MAX_NPROC)
    except OSError as exc:
        return f"Error: could not make the call's cgroup (its memory and process caps): {exc}"
    out, err = _Capture(), _Capture()
    proc: asyncio.subprocess.Process | None = None
    readers: list[asyncio.Task[None]] = []
    collector: asyncio.Task[bytes] | None = None
    transport: asyncio.ReadTransport | None = None
    timed_out = False
    code_fd = report_r = report_w = -1
    try:
        code_fd = _code_fd(code)
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        argv = [
            setup.python,
            "-I",
            "-S",
            "-B",
            "-c",
            SUPERVISOR,
            str(report_w),
            str(MAX_COPY_FILES),
            str(MAX_COPY_BYTES),
            setup.python,
            RUNNER,
            SCRIPT,
            WORK,
        ]
        uid = sandbox.fresh_uid() if setup.fresh_uid else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *sandbox.bwrap_command(setup, [(code_fd, SCRIPT)], memory, argv),
                cwd="/",
                env={"PATH": PATH, "LANG": "C.UTF-8"},
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(code_fd, report_w),
                preexec_fn=sandbox.preexec(cgroup, uid, _limits(math.ceil(timeout_s), memory)),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"Error: could not start the sandbox: {type(exc).__name__}: {exc}"
        finally:
            os.close(report_w)
            report_w = -1
        fd, report_r = report_r, -1
        transport, report_reader = await _open_report(fd)
        collector = asyncio.create_task(_collect(report_reader, MAX_HEADER + MAX_COPY_BYTES + 1))
        readers = [
            asyncio.create_task(_drain(proc.stdout, out)),
            asyncio.create_task(_drain(proc.stderr, err)),
        ]
        timed_out = await _wait(proc, timeout_s)
        await asyncio.wait([*readers, collector], timeout=5)
        report = _unpack(collector.result()) if collector.done() and not collector.exception() else None
        report = report or _Report()
        copied = await asyncio.to_thread(_store, report, workspace)
        counters = (cgroup.oom_kills(), cgroup.pids_refused())
    finally:
        if proc is not None and proc.returncode is None:  # cancelled: the run was stopped
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # bubblewrap: its PID 1 dies with it, and the kernel kills the rest
            await proc.wait()
        for task in [*readers, *([collector] if collector else [])]:
            task.cancel()
        if transport is not None:
            transport.close()
        for fd in (code_fd, report_r, report_w):
            if fd >= 0:
                os.close(fd)
        if cgroup.dirs:
            await asyncio.shield(asyncio.to_thread(cgroup.remove))
    rc = report.rc if report.rc is not None or timed_out else (proc.returncode if proc else None)
    lines = [line for line in (_diagnose(rc, err, timed_out, timeout_s, memory_mb, counters),) if line]
    lines.append(_exit_status(None if timed_out else rc))
    lines += ["--- stdout ---", out.render() or "(no output)"]
    if err.head:
        lines += ["--- stderr ---", err.render()]
    if copied:
        lines.append(copied)
    if setup.network == "none":
        lines.append("Note: network not isolated on this machine.")
    return "\n".join(lines)
