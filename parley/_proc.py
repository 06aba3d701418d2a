"""Process-wide settings for the processes that run conversations: `parley run`, `parley eval`, the web chat, a
cluster's workers (their garbage collector, and for the long-running ones their event loop)."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

_frozen = False
FULL_COLLECTION_AFTER = 100
"""Middle-generation collections between two full ones at least (CPython's default: 10), that is a thousand young
ones by default."""


def freeze_startup_objects() -> None:
    """Take what the imports created (modules, classes, schemas: most of the heap) out of the garbage
    collector's way, once per process. Otherwise each full collection during a run walks all of it again:
    measured on a 200-message run, two full collections took 0.13 s, and 0.03 s once frozen.

    Full collections also come ten times less often (`FULL_COLLECTION_AFTER`): what a few hundred live conversations hold still takes a
    full collection 0.1 to 0.25 s, with the whole process stopped (measured in each process of a cluster at 200
    conversations: six or seven such pauses each, and none once spaced out). The young collections, which free
    nearly all the cycles a run leaves, go on as before."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)
        _frozen = True


LOOP_ENV = "PARLEY_EVENT_LOOP"
"""Which event loop the web chat and a cluster's workers run on: `uvloop` (the default where it is installed) or
`asyncio` (the standard library's)."""


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the event loop of a long-running process (`LOOP_ENV`): uvloop's, or None for asyncio's own.

    uvloop runs the loop, its timers and its sockets in C. Through a cluster at 200 conversations it cut the CPU of
    each web process and worker by about a tenth (bench/webload.py --cluster, docs/performance.md). A process that
    runs on it takes it from `service_loop()`."""
    choice = os.environ.get(LOOP_ENV, "").strip().lower() or "auto"
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ConfigError(
            f"{LOOP_ENV}={choice!r}: say 'uvloop' or 'asyncio' (or leave it unset for uvloop if installed)"
        )
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        if choice == "uvloop":
            raise ConfigError(f"{LOOP_ENV}=uvloop, but uvloop is not installed: pip install uvloop") from exc
        return None  # Windows: uvloop has no build there
    return uvloop.new_event_loop


def service_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """`loop_factory()` for a process about to run on it: on uvloop, its inherited descriptors are kept from the
    programs it will start first (`keep_descriptors_from_children`)."""
    factory = loop_factory()
    if factory is not None:
        keep_descriptors_from_children()
    return factory


def run_service(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop `service_loop` gives."""
    with asyncio.Runner(loop_factory=service_loop()) as runner:
        return runner.run(main)


def keep_descriptors_from_children() -> None:
    """Make every descriptor this process inherited (but 0, 1 and 2) close on exec.

    The standard loop starts a program (an MCP server, the `run_python` sandbox) with `close_fds`: the child gets
    its stdin, stdout and stderr and nothing else. uvloop starts it through libuv, which closes nothing: whatever
    this process holds that is inheritable goes along. What Python opens is never inheritable (PEP 446); what a
    process inherited from whatever started it may be, so it is made close-on-exec before uvloop's loop starts."""
    try:
        held = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc (macOS): nothing to go by
        return
    for fd in held:
        if fd <= 2:
            continue
        try:
            if os.get_inheritable(fd):
                os.set_inheritable(fd, False)
        except OSError:  # the listing's own descriptor, closed by now
            continue
