"""The web chat's server runs on its own event loop: Chainlit's CLI patches asyncio with nest_asyncio as it is
imported, and parley/web/_chainlit_loop.py undoes that before the server starts (docs/performance.md: a sixth of a
web process's CPU). Each check runs in a fresh interpreter, as `chainlit run` does."""

from __future__ import annotations

import json
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


DESCRIPTORS = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from parley._proc import run_service

    inherited, _ = os.pipe()
    os.set_inheritable(inherited, True)  # as a descriptor handed down by whatever started the process
    LIST = (
        "import json, os; fds = os.listdir('/proc/self/fd'); "
        "print(json.dumps({f: os.readlink('/proc/self/fd/' + f) for f in fds if os.path.exists('/proc/self/fd/' + f)}))"
    )

    async def child_sees():
        loop = type(asyncio.get_running_loop()).__module__
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", LIST, stdout=asyncio.subprocess.PIPE)
        out, _ = await child.communicate()
        return loop, json.loads(out)

    loop, seen = run_service(child_sees())
    print(json.dumps({"loop": loop, "inherited": os.readlink(f"/proc/self/fd/{inherited}"), "seen": seen}))
    """
)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to list a process's descriptors")
def test_a_program_started_on_uvloop_gets_none_of_the_descriptors_the_process_inherited() -> None:
    """uvloop starts programs (MCP servers, the run_python sandbox) without closing what the parent holds, unlike
    the standard loop's close_fds: a descriptor the process was handed must not reach them. (libuv leaves the child
    copies of its own stdin, stdout and stderr above 2: those are the child's own.)"""
    done = subprocess.run(
        [sys.executable, "-c", DESCRIPTORS],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != LOOP_ENV},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["loop"] == "uvloop"
    seen: dict[str, str] = found["seen"]
    own = {seen[fd] for fd in ("0", "1", "2")}
    assert found["inherited"] not in seen.values(), found
    assert set(seen.values()) <= own, f"the child holds more than its own stdio: {seen}"
