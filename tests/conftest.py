"""Shared fixtures. Tests never reach a network model: a guard refuses any non-loopback connection."""

from __future__ import annotations

import asyncio
import os
import socket
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from ui.web_servers import PG_DEFAULT, pg_admin

from parley.store import Store
from parley.store._schema import metadata
from parley.store._urls import normalise_url, redact
from parley.tools import ToolRegistry

pytest_plugins = ["chromium_plugin"]  # Chromium once per test process, for every folder's browser tests

ROOT = Path(__file__).resolve().parent.parent
_KEYS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "OPENAI_API_VERSION",
    "OLLAMA_HOST",
    "PARLEY_MODEL",
    "PARLEY_TEAMS",
    "PARLEY_TOOLS",
    "PARLEY_PRICES",
    "PARLEY_TRUSTED_TEAMS",
    "PARLEY_ALLOWED_ORIGINS",
    "PARLEY_SANDBOX_CGROUP",
    "PARLEY_SANDBOX_SHARE_NETWORK",
    "PARLEY_SCRIPTED_VIA",
)
_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else address
    if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
        raise RuntimeError(f"test tried to reach {address}: tests must not use the network")
    return _real_connect(self, address)


_BROWSER_FIXTURES = frozenset({"ui_browser"})
"""The fixture that launches Chromium (tests/ui/conftest.py's), which every browser test uses."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `browser` every test that drives Chromium (`pytest -m browser`: the browser suite alone). `make
    test-browser` collects only the folders its Makefile lists: a browser test elsewhere would be left out."""
    folders = _browser_folders()
    for item in items:
        if _BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)
            if folders and not any(item.path.is_relative_to(f) for f in folders):
                raise pytest.UsageError(
                    f"{item.nodeid} drives Chromium outside the Makefile's BROWSER_TESTS folders "
                    f"({', '.join(str(f.relative_to(_ROOT)) for f in folders)}): add its folder there"
                )


_ROOT = Path(__file__).resolve().parents[1]


def _browser_folders() -> list[Path]:
    """The folders of the Makefile's BROWSER_TESTS (none where there is no Makefile, as in an installed sdist)."""
    try:
        lines = (_ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    found = [line.split(":=", 1)[1].split() for line in lines if line.startswith("BROWSER_TESTS :=")]
    return [_ROOT / f for f in found[0]] if found else []


@pytest.fixture(autouse=True)
def _no_network_models(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    for key in _KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path_factory.getbasetemp() / "parley-data"))
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    yield


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a dedented file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


os.environ.setdefault("PARLEY_AUTOGEN_LOG", "CRITICAL")


T = TypeVar("T")


def _in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on its own loop in another thread: safe whether or not a test loop is running."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The URL of a database created for this session."""
    base = os.environ.get("PARLEY_TEST_PG_URL") or PG_DEFAULT
    name = f"parley_test_{uuid.uuid4().hex[:12]}"
    try:
        _in_thread(lambda: pg_admin(base, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.skip(
            f"PostgreSQL not reachable at {redact(base)}: start it or set PARLEY_TEST_PG_URL "
            f"({type(exc).__name__}: {exc})"
        )
    yield normalise_url(base).set(database=name).render_as_string(hide_password=False)
    _in_thread(lambda: pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or the session's PostgreSQL database with its tables dropped."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'parley.db'}"
    url: str = request.getfixturevalue("pg_database")
    drops = [f'DROP TABLE IF EXISTS "{t.name}" CASCADE' for t in reversed(metadata.sorted_tables)]
    _in_thread(lambda: pg_admin(url, *drops))
    return url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(db_url)
    yield opened
    await opened.close()


@pytest.fixture(scope="session")
def reg() -> ToolRegistry:
    """The shipped tools, loaded from tools/ as the registry loads them for users."""
    registry = ToolRegistry.discover([ROOT / "tools"])
    assert registry.errors == []
    return registry
