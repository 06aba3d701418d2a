"""OpenTelemetry traces of runs, switched on by the standard OTEL_* variables (the `parley[otel]` extra).

One trace per run: a span for the run, one per turn, model call (GenAI conventions), tool call, approval or
question wait, selector pick and store write. The spans are built from the run's events, outside the engine.
With no OTLP endpoint set, or OTEL_SDK_DISABLED=true, nothing of OpenTelemetry's SDK is imported.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..run import Run
    from ._otlp import RunTrace

__all__ = ["ENDPOINTS", "flush", "observe", "tracing_enabled"]

ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""Either one switches traces on."""
EXTRA_MISSING = (
    "%s is set but OpenTelemetry's SDK is not installed, so runs are not traced: "
    "pip install 'parley[otel]' (opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http)"
)

_log = logging.getLogger("parley.telemetry")
_observed: weakref.WeakSet[Run] = weakref.WeakSet()
_followers: set[asyncio.Task[None]] = set()
"""The tasks following runs, kept until done (the event loop holds only weak references to tasks)."""


def tracing_enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is set, the SDK is not disabled
    (OTEL_SDK_DISABLED=true) and the traces exporter is not `none`."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINTS)


def observe(run: Run) -> asyncio.Task[None] | None:
    """Trace `run` when the environment asks for it (see tracing_enabled); returns the task that follows its
    events, or None. Called once per run by Conversation.start; a second call for the same run does nothing."""
    if not tracing_enabled() or run in _observed:
        return None
    started = time.time()
    try:
        from ._otlp import RunTrace, tracer
    except ImportError:
        _sdk_missing(next(n for n in ENDPOINTS if os.environ.get(n, "").strip()))
        return None
    _observed.add(run)
    spans = RunTrace(tracer(), run, started)
    run.on_store_write(spans.store_write)
    task = asyncio.get_running_loop().create_task(_follow(run, spans), name="parley-trace")
    _followers.add(task)
    task.add_done_callback(_followers.discard)
    return task


@functools.cache
def _sdk_missing(variable: str) -> None:
    """Said once per process: a server would otherwise say it at every run."""
    _log.warning(EXTRA_MISSING, variable)


async def _follow(run: Run, spans: RunTrace) -> None:
    seen = 0  # the run's shown events taken so far (streamed chunks are never among them)
    try:
        async for ev in run:
            if ev.type != "chunk":
                seen += 1
            if spans.event(ev):
                return
    except asyncio.CancelledError:
        # The program ended its event loop as soon as it had the result (`parley run` does): what was shown is
        # all there is, so finish the trace from it.
        for ev in run.events[seen:]:
            if spans.event(ev):
                break
        else:
            spans.abandon("the run's event loop ended before the run")
        raise
    except Exception as exc:  # a trace must never break a run: close it and say why
        spans.abandon(f"{type(exc).__name__}: {exc}")
        _log.warning("tracing run %s failed: %s: %s", run.number, type(exc).__name__, exc)


def flush(timeout_s: float = 10.0) -> bool:
    """Export every finished span now (blocks up to `timeout_s`); True when done or when nothing is traced."""
    if not tracing_enabled():
        return True
    try:
        from ._otlp import flush as flush_provider
    except ImportError:
        return True
    return flush_provider(timeout_s)
