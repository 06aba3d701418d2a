"""Real MCP servers for the tests: parley's own FastMCP test server over stdio or streamable HTTP (started on a
free port, waited for by polling the port), declared in team files the way a user would."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

SERVER = Path(__file__).resolve().parent / "mcp_servers" / "parley_test_server.py"
AUTH = "Bearer s3cr3t-token-4711"
"""The Authorization header the HTTP test server expects (see its `whoami` tool)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def http_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """The test server over streamable HTTP; yields its URL once its port accepts connections."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                said = proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                raise RuntimeError(f"the MCP test server exited: {said}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the MCP test server did not listen within 30 s")
            time.sleep(0.05)  # polling the port, not waiting for a fixed time
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_yaml(
    transport: str, url: str = "", *, name: str = "peer", timeout_s: float | None = None, extra: str = ""
) -> str:
    """An `mcp:` entry for the test server: over stdio (`transport="stdio"`) or at `url`."""
    lines = [f"  - name: {name}"]
    if transport == "stdio":
        lines += [f"    command: {sys.executable}", f"    args: [{SERVER}, stdio]"]
    else:
        lines.append(f"    url: {url}")
    if timeout_s is not None:
        lines.append(f"    timeout_s: {timeout_s}")
    return "\n".join(lines) + "\n" + extra
