"""The real web chat (`parley ui`) in a subprocess, for the browser tests, and what they share with it.

Every server runs from the project root on a free loopback port with its own data folder and a
scripted model (`tests/ui/scripts/*.yaml`), so replies are deterministic and nothing is downloaded.
A plain module, not a conftest: pytest imports a conftest under a name of its own, so names defined in one
and imported elsewhere (`from ui.conftest import Server`) would be two classes, each with its own list of
running servers.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import asyncpg
import redis
from sqlalchemy.engine import make_url

from parley.store import Store

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
STILL = """document.addEventListener('DOMContentLoaded', () => {
  const style = document.createElement('style');
  style.textContent = '*, *::before, *::after { animation: none !important; transition: none !important; }';
  document.head.appendChild(style);
});"""
"""Pages hold still: a spinner or a blinking caret repaints the page many times a second, which costs more CPU than
the rest of a browser test on a busy machine. Screenshots are unchanged (taken when nothing moves anyway)."""
STARTUP_S = 60.0
UI_TIMEOUT_MS = 20_000
# Settings of the developer's shell that must not leak into a test server.
_SCRUB = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "OPENAI_API_VERSION",
    "OLLAMA_HOST",
    "PARLEY_MODEL",
    "PARLEY_TEAMS",
    "PARLEY_TOOLS",
    "PARLEY_PRICES",
    "PARLEY_DATABASE_URL",
    "PARLEY_UI_HOST",
    "PARLEY_UI_PORT",
    "PARLEY_HOME",
    "CHAINLIT_AUTH_SECRET",
    "CHAINLIT_APP_ROOT",
)
T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str, timeout_s: float = 20.0) -> T:
    """Poll `check` (e.g. a store query) until it returns something truthy, and return that.
    For what the server records; what a page shows is waited for with `expect` or `wait_for_function`."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(0.1)
    return value


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Python Playwright is not installed in this environment (pip install playwright)"
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} not found: install Debian's chromium package (browsers are never downloaded)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parley_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("parley")
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "parley.cli", *args]


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on its own loop in another thread: safe whatever pytest-asyncio is doing."""

    async def go() -> T:
        return await make()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(go())).result()


class Server:
    """One `parley ui` process. Its data folder outlives it, so a restart sees the same store."""

    running: ClassVar[list[Server]] = []

    def __init__(
        self, data_dir: Path, script: str, *, port: int | None = None, web_dir: Path | None = None
    ) -> None:
        self.data_dir = data_dir
        self.script = SCRIPTS / script
        self.port = port or free_port()
        self._any_port = port is None
        """A free port picked here: another may take it before the server binds it (tests run in parallel)."""
        # Chainlit's folder of its own: a server stopping empties its `.files`, which others would share.
        self.web_dir = web_dir or data_dir / f"web-{self.port}"
        self.log_path = data_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.data_dir / 'parley.db'}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        return env | {
            "PARLEY_DATA_DIR": str(self.data_dir),
            "PARLEY_WEB_DIR": str(self.web_dir),
            "PARLEY_MODEL": f"scripted:{self.script}",
            "PARLEY_AUTOGEN_LOG": "CRITICAL",
            "PYTHONUNBUFFERED": "1",
        }

    def parley(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run a `parley` command against this server's data folder (e.g. `users add`)."""
        done = subprocess.run(
            parley_command(*args),
            input=stdin,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=self.env(),
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"parley {' '.join(args)} failed: {done.stdout}{done.stderr}"
        return done

    def start(self) -> Server:
        return self.launch().wait_ready()

    def launch(self) -> Server:
        """Start the process without waiting for it (servers boot in parallel; see `wait_ready`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                parley_command("ui", "--host", "127.0.0.1", "--port", str(self.port)),
                cwd=ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so teardown kills everything it started
            )
        Server.running.append(self)
        return self

    def wait_ready(self) -> Server:
        """Wait until the web chat answers HTTP 200 on /."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + STARTUP_S
        while True:
            if self.proc.poll() is not None:
                if self._any_port and "address already in use" in self.log_tail(5):
                    if self in Server.running:
                        Server.running.remove(self)
                    self.port = free_port()  # taken meanwhile by another test's server: try another
                    self.launch()
                    continue
                raise AssertionError(f"parley ui exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(
                    f"parley ui did not answer on {self.url} within {STARTUP_S:g} s:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL: a crash) to the whole process group; SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if self in Server.running:
            Server.running.remove(self)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- the store, read directly: what the server really recorded --------------------------------

    def query(self, use: Callable[[Store], Awaitable[T]]) -> T:
        async def go() -> T:
            store = await Store.open(self.db_url)
            try:
                return await use(store)
            finally:
                await store.close()

        return run_async(go)

    def events(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's stored events as dicts (payload plus `seq` and `type`), oldest first."""
        rows = self.query(lambda s: s.events(thread_id))
        return [r.payload | {"seq": r.seq, "type": r.type} for r in rows]

    def audit(self, thread_id: str) -> list[Any]:
        return self.query(lambda s: s.audit_log(thread_id))

    def threads(self, owner: str) -> list[Any]:
        return self.query(lambda s: s.list_threads(owner))


PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
"""This machine's PostgreSQL (trust auth), where PARLEY_TEST_PG_URL (tests) or PARLEY_BENCH_PG_URL (benchmarks) is
not set."""


async def pg_admin(url: str, *statements: str) -> None:
    """Run `statements` (CREATE DATABASE, DROP TABLE...) on the PostgreSQL server of `url`, outside a transaction."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A `parley worker` of a cluster (its settings in `env`), its output appended to `log_path`, in a process group
    of its own (stopping the group stops everything it started)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            parley_command("worker"),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_workers(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each worker's process group (they hand their runs on), then SIGKILL to any still there after 30 s."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def clear_redis(url: str, prefix: str) -> None:
    """Delete a cluster's keys (`prefix:*`) from the Redis at `url`."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@atexit.register
def _no_orphans() -> None:
    """Servers run in their own process groups: never leave one behind, even if pytest is interrupted."""
    for server in list(Server.running):
        server.stop(kill=True)
