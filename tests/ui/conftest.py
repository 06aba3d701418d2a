"""Fixtures for the browser tests: the real web chat (`parley ui`) in a subprocess (tests/ui/web_servers.py);
Chromium comes from tests/chromium_plugin.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ui.web_servers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    SCRIPTS,
    STILL,
    UI_TIMEOUT_MS,
    Server,
    browser_missing,
    free_port,
    parley_command,
    run_async,
    wait_until,
)

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "ROOT",
    "SCRIPTS",
    "STILL",
    "UI_TIMEOUT_MS",
    "Server",
    "browser_missing",
    "free_port",
    "own_server",
    "parley_command",
    "run_async",
    "servers",
    "wait_until",
]


@pytest.fixture(scope="module")
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Server]]:
    """`servers("studio.yaml")`: a running server for that script, shared by the module's tests.
    The scripts a module lists in `SHARED_SERVERS` boot together, in parallel, on first use."""
    if browser_missing():
        pytest.skip(browser_missing() or "")
    started: dict[str, Server] = {}

    def launch(script: str) -> None:
        data = tmp_path_factory.mktemp(f"data-{Path(script).stem}")
        started[script] = Server(data, script).launch()

    def get(script: str) -> Server:
        if not started:
            for name in getattr(request.module, "SHARED_SERVERS", ()):
                launch(name)
        if script not in started:
            launch(script)
        return started[script].wait_ready()

    try:
        yield get
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """`own_server("restart.yaml")`: a server of the test's own (not started yet), stopped after the test."""
    mine: list[Server] = []

    def make(
        script: str, *, data_dir: Path | None = None, port: int | None = None, web_dir: Path | None = None
    ) -> Server:
        server = Server(data_dir or tmp_path / "data", script, port=port, web_dir=web_dir)
        mine.append(server)
        return server

    try:
        yield make
    finally:
        for server in mine:
            server.stop()
