"""The web chat's server runs on its own event loop: Chainlit's CLI patches asyncio with nest_asyncio as it is
imported, and parley/web/_chainlit_loop.py undoes that before the server starts (docs/performance.md: a sixth of a
web process's CPU). Each check runs in a fresh interpreter, as `chainlit run` does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from parley._proc import LOOP_ENV, loop_factory, run_service
from parley.errors import ConfigError

PROBE = textwrap.dedent(
    """
    import asyncio, json, sys
    import chainlit.cli  # what `chainlit run` imports first
    patched = bool(getattr(asyncio, "_nest_patched", False))
    from parley.web import _chainlit_loop
    chosen = _chainlit_loop.serve_on_own_loop()
    broken = _chainlit_loop.check()

    async def inside():
        loop = asyncio.get_running_loop()
        try:
            loop.run_until_complete(asyncio.sleep(0))  # a nested run: asyncio's own loop refuses it
            nested = "ran"
        except RuntimeError as exc:
            nested = str(exc)
        return {
            "loop": type(loop).__module__ + "." + type(loop).__name__,
            "task": type(asyncio.current_task()).__module__,
            "nested": nested,
            "again": _chainlit_loop.serve_on_own_loop(),
        }

    seen = asyncio.run(inside())
    print(json.dumps({"patched": patched, "chosen": chosen, "broken": broken, **seen}))
    """
)


def probe(**env: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != LOOP_ENV} | env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_chainlits_server_runs_on_uvloop_with_asyncios_c_tasks_and_no_nesting() -> None:
    seen = probe()
    assert seen["patched"], (
        "Chainlit's CLI no longer applies nest_asyncio: parley/web/_chainlit_loop.py can go"
    )
    assert seen["broken"] == [], seen["broken"]
    assert seen["chosen"] == "uvloop"
    assert seen["loop"] == "uvloop.Loop"
    assert seen["task"] == "_asyncio", "asyncio's tasks are nest_asyncio's pure-Python ones"
    assert "already running" in str(seen["nested"])
    assert seen["again"] is None, "imported again inside the running server (watch mode), it changes nothing"


def test_with_the_standard_loop_asked_for_the_patches_are_undone_as_well() -> None:
    seen = probe(**{LOOP_ENV: "asyncio"})
    assert seen["chosen"] == "asyncio" and seen["broken"] == []
    assert seen["loop"] == "asyncio.unix_events._UnixSelectorEventLoop"
    assert seen["task"] == "_asyncio"
    assert "already running" in str(seen["nested"]), "the loop's methods are still nest_asyncio's"


def test_outside_chainlits_process_nothing_is_changed() -> None:
    from parley.web import _chainlit_loop

    assert "chainlit.cli" not in sys.modules
    assert _chainlit_loop.serve_on_own_loop() is None


def test_a_wrong_loop_setting_says_what_to_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_ENV, "trio")
    with pytest.raises(ConfigError, match="PARLEY_EVENT_LOOP='trio': say 'uvloop' or 'asyncio'"):
        loop_factory()


def test_a_worker_runs_on_the_loop_the_setting_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    async def kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    monkeypatch.delenv(LOOP_ENV, raising=False)
    assert run_service(kind()) == "uvloop"
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    assert run_service(kind()) == "asyncio.unix_events"
