"""The web chat's event loop, freed from the nest_asyncio patches Chainlit's CLI applies.

`chainlit run` calls `nest_asyncio.apply()` as its CLI module is imported, for one call: a session's configuration
runs the chat profiles callback with `run_until_complete` inside the running loop. parley replaces that call
(`_chainlit_fixes.install`), so nothing in the web chat nests the loop. The patches stayed and cost every message:
asyncio's tasks and futures in pure Python instead of C, and the loop's `_run_once` in pure Python too. At 200
conversations through a cluster they were about a sixth of each web process's CPU (docs/performance.md).

`serve_on_own_loop()`, called as the app is imported (before Chainlit starts its server with `asyncio.run`), puts
back asyncio's own tasks, futures, loop methods and `asyncio.run`, and has that server run on the loop
`parley._proc.service_loop` gives (uvloop where installed). `check()` says whether Chainlit and nest_asyncio still
behave as this assumes; tests/test_chainlit_loop.py calls it in a process that imported Chainlit's CLI.
"""

from __future__ import annotations

import asyncio
import sys
from asyncio import events, futures, runners, tasks
from typing import Any

from .._proc import service_loop

__all__ = ["check", "serve_on_own_loop"]

_LOOP_PATCHES = (
    "run_forever",
    "run_until_complete",
    "_run_once",
    "_check_running",
    "_check_runnung",
    "_num_runs_pending",
    "_is_proactorloop",
    "_nest_patched",
)
"""What nest_asyncio sets on the loop's class, over asyncio's own methods (which its base classes keep)."""


def serve_on_own_loop() -> str | None:
    """In the process `chainlit run` started, before its server starts: undo nest_asyncio and choose the loop the
    server runs on. Returns what it runs on (`uvloop`, `asyncio`), or None where there is nothing to do (another
    process imported the app, or a loop already runs: Chainlit's watch mode imports it again)."""
    if "chainlit.cli" not in sys.modules or _running():
        return None
    _unpatch()
    factory = service_loop()
    if factory is None:
        return "asyncio"
    policy = asyncio.DefaultEventLoopPolicy()
    policy.new_event_loop = factory  # type: ignore[method-assign]  # Chainlit's `asyncio.run` makes its loop here
    asyncio.set_event_loop_policy(policy)
    return factory.__module__.split(".")[0]


def _running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _unpatch() -> None:
    if not getattr(asyncio, "_nest_patched", False):
        return
    import _asyncio

    tasks.Task = tasks._CTask = asyncio.Task = _asyncio.Task  # type: ignore[misc]
    futures.Future = futures._CFuture = asyncio.Future = _asyncio.Future  # type: ignore[misc]
    events.get_event_loop = asyncio.get_event_loop = _asyncio.get_event_loop
    events._get_event_loop = _asyncio._get_event_loop  # type: ignore[attr-defined]
    asyncio.run = runners.run
    policy = events.get_event_loop_policy()
    if _from_nest(type(policy).__dict__.get("get_event_loop")):
        delattr(type(policy), "get_event_loop")
    made = policy.get_event_loop()  # the loop nest_asyncio made as it applied itself: never run, nobody's
    if not made.is_running():
        made.close()
        policy.set_event_loop(None)
    loop_class = asyncio.SelectorEventLoop
    for name in _LOOP_PATCHES:
        if name in loop_class.__dict__ and (
            _from_nest(loop_class.__dict__[name]) or not hasattr(asyncio.BaseEventLoop, name)
        ):
            delattr(loop_class, name)
    del asyncio._nest_patched  # type: ignore[attr-defined]


def _from_nest(value: Any) -> bool:
    return getattr(value, "__module__", None) == "nest_asyncio"


def check() -> list[str]:
    """What no longer holds of the above; empty when all does. Call it in a process that imported `chainlit.cli`
    and then `serve_on_own_loop()` outside any loop."""
    broken: list[str] = []
    import _asyncio

    if asyncio.Task is not _asyncio.Task or asyncio.Future is not _asyncio.Future:
        broken.append("asyncio's tasks or futures are still nest_asyncio's pure-Python ones")
    if asyncio.run is not runners.run:
        broken.append("asyncio.run is still nest_asyncio's")
    for name in _LOOP_PATCHES:
        if _from_nest(getattr(asyncio.SelectorEventLoop, name, None)):
            broken.append(f"the event loop's {name} is still nest_asyncio's")
    return broken
