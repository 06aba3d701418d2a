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
from typing import Annotated, Any

from parley import sandbox
from parley.paths import inside
from parley.sandbox import SANDBOX, Cgroup, Missing, Setup, new_cgroup
from parley.tools import current_context, load_helper, tool

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
CLOSE_WAIT_S = 10.0
"""How long a closing call waits for the killed sandbox to be seen gone."""
PATH = "/usr/bin:/bin"
SCRIPT = f"{SANDBOX}/main.py"
WORK = f"{SANDBOX}/work"

_setup: Setup | None = None

_inside = load_helper(__file__, "_inside")
RUNNER: str = _inside.RUNNER
SUPERVISOR: str = _inside.SUPERVISOR
_RUNNER_FRAME = f'  File "<string>", line {RUNNER.count(chr(10))}, in <module>\n'


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
    _take_files(report, entries if isinstance(entries, list) else [], body)
    return report


def _take_files(report: _Report, entries: list[Any], body: bytes) -> None:
    """The files the header lists, cut from the body in order; stop at the first entry that does not fit."""
    offset = 0
    for entry in entries:
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


class _Call:
    """One run_python call's sandbox: the process, its output readers, the report pipe, and what must be closed."""

    def __init__(self, setup: Setup, cgroup: Cgroup, memory: int, timeout_s: float) -> None:
        self.setup = setup
        self.cgroup = cgroup
        self.memory = memory
        self.timeout_s = timeout_s
        self.out, self.err = _Capture(), _Capture()
        self.proc: asyncio.subprocess.Process | None = None
        self.readers: list[asyncio.Task[None]] = []
        self.collector: asyncio.Task[bytes] | None = None
        self.transport: asyncio.ReadTransport | None = None
        self.fds: list[int] = []
        """Descriptors this call still has to close."""

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def _argv(self, report_w: int) -> list[str]:
        python = self.setup.python
        limits = [str(report_w), str(MAX_COPY_FILES), str(MAX_COPY_BYTES)]
        return [python, "-I", "-S", "-B", "-c", SUPERVISOR, *limits, python, RUNNER, SCRIPT, WORK]

    async def start(self, code: str) -> str:
        """Start the sandbox running `code`; "" once it runs, else why it could not start."""
        code_fd = _code_fd(code)
        self.fds.append(code_fd)
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        self.fds.append(report_r)
        uid = sandbox.fresh_uid() if self.setup.fresh_uid else None
        creating = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *sandbox.bwrap_command(self.setup, [(code_fd, SCRIPT)], self.memory, self._argv(report_w)),
                cwd="/",
                env={"PATH": PATH, "LANG": "C.UTF-8"},
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(code_fd, report_w),
                preexec_fn=sandbox.preexec(self.cgroup, uid, _limits(math.ceil(self.timeout_s), self.memory)),
            )
        )
        try:
            # Not cancelled half way: asyncio would kill the process it just forked and wait, for good, until its
            # pipes close, and bubblewrap's PID 1, not yet set to die with its parent, may hold them for good (a
            # run stopped as the call starts). The call is cancelled once the process is known, and `close` ends it.
            self.proc = await asyncio.shield(creating)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                self.proc = await creating
            raise
        except (OSError, subprocess.SubprocessError) as exc:
            return f"Error: could not start the sandbox: {type(exc).__name__}: {exc}"
        finally:
            os.close(report_w)
        self.fds.remove(report_r)  # the transport owns it from here
        self.transport, report_reader = await _open_report(report_r)
        self.collector = asyncio.create_task(_collect(report_reader, MAX_HEADER + MAX_COPY_BYTES + 1))
        self.readers = [
            asyncio.create_task(_drain(self.proc.stdout, self.out)),
            asyncio.create_task(_drain(self.proc.stderr, self.err)),
        ]
        return ""

    async def finish(self) -> tuple[bool, _Report]:
        """Wait for the code to end (stopping it at the timeout): whether it timed out, and its report."""
        assert self.proc is not None and self.collector is not None
        timed_out = await _wait(self.proc, self.timeout_s)
        await asyncio.wait([*self.readers, self.collector], timeout=5)
        done = self.collector.done() and not self.collector.exception()
        report = _unpack(self.collector.result()) if done else None
        return timed_out, report or _Report()

    async def close(self) -> None:
        """Kill what is left (a cancelled call: the run was stopped), close everything, remove the cgroup."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # bubblewrap: its PID 1 dies with it, and the kernel kills the rest
        # Then everything left in the call's cgroup: bubblewrap's PID 1 outlives a SIGKILL that comes before it set
        # its death signal (a call cancelled as it starts). It holds the output pipes, and asyncio's wait() returns
        # only once every pipe is closed: the call, and the run's Stop, would wait for good.
        if self.cgroup.dirs:
            await asyncio.shield(asyncio.to_thread(self.cgroup.remove))
        if proc is not None:
            with contextlib.suppress(TimeoutError):  # a holder outside the cgroup: never wait for good
                await asyncio.wait_for(proc.wait(), CLOSE_WAIT_S)
        for task in [*self.readers, *([self.collector] if self.collector else [])]:
            task.cancel()
        if self.transport is not None:
            self.transport.close()
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


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
    call = _Call(setup, cgroup, memory, timeout_s)
    try:
        failed = await call.start(code)
        if failed:
            return failed
        timed_out, report = await call.finish()
        copied = await asyncio.to_thread(_store, report, workspace)
        counters = (cgroup.oom_kills(), cgroup.pids_refused())
    finally:
        await call.close()
    rc = report.rc if report.rc is not None or timed_out else call.returncode
    lines = [line for line in (_diagnose(rc, call.err, timed_out, timeout_s, memory_mb, counters),) if line]
    lines.append(_exit_status(None if timed_out else rc))
    lines += ["--- stdout ---", call.out.render() or "(no output)"]
    if call.err.head:
        lines += ["--- stderr ---", call.err.render()]
    if copied:
        lines.append(copied)
    if setup.network == "none":
        lines.append("Note: network not isolated on this machine.")
    return "\n".join(lines)
