"""Shared fixtures. Tests never reach a network model: a guard refuses any non-loopback connection."""

from __future__ import annotations

import os
import socket
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT",
         "OPENAI_API_VERSION", "OLLAMA_HOST", "PARLEY_MODEL", "PARLEY_TEAMS", "PARLEY_TOOLS", "PARLEY_PRICES")
_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else address
    if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
        raise RuntimeError(f"test tried to reach {address}: tests must not use the network")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network_models(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
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
