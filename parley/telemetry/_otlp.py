"""A run's trace, exported over OTLP/HTTP: the one module that imports OpenTelemetry's SDK.

The tracer provider is parley's own (AutoGen's plumbing spans, which go to the global provider, stay out of it) and
is configured by the standard variables: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT,
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .._outbox import Checkpoint
from ..events import (
    ChunkEvent,
    ErrorEvent,
    Event,
    HumanMessageEvent,
    RunResult,
    RunStartedEvent,
    ValidationEvent,
    VoteEvent,
)
from ._parts import Part, RunParts

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["RunTrace", "flush", "tracer"]

CONFIG = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)
"""The variables a provider is made from: when one changes, the next run gets a new provider."""

NOT_HTTP = (
    "OTEL_EXPORTER_OTLP_PROTOCOL is %r, but parley sends traces over OTLP/HTTP (http/protobuf): point the endpoint "
    "at the collector's HTTP port (4318 by default)"
)

_state: dict[str, Any] = {}
_log = logging.getLogger("parley.telemetry")


def _resource() -> Resource:
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "parley"}))
    try:
        return resource.merge(Resource({"service.version": version("parley")}))
    except PackageNotFoundError:
        return resource


def tracer() -> trace.Tracer:
    """parley's tracer, on a provider made from the environment as it is now."""
    key = tuple(os.environ.get(name) for name in CONFIG)
    if _state.get("key") != key:
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        )
        if protocol and protocol.strip() != "http/protobuf":
            _log.warning(NOT_HTTP, protocol)
        old: TracerProvider | None = _state.get("provider")
        provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        if old is None:  # a run from the command line sends what is left of its trace as the process ends
            atexit.register(_shutdown)
        else:
            old.shutdown()
        _state.update(key=key, provider=provider, tracer=provider.get_tracer("parley"))
    return _state["tracer"]


def _shutdown() -> None:
    provider: TracerProvider | None = _state.get("provider")
    if provider is not None:
        provider.shutdown()


def flush(timeout_s: float = 10.0) -> bool:
    """Export every finished span now (blocks); False if that took longer than `timeout_s`."""
    provider: TracerProvider | None = _state.get("provider")
    return provider is None or provider.force_flush(int(timeout_s * 1000))


def _ns(ts: float) -> int:
    return int(ts * 1e9)


class RunTrace:
    """One run's trace: its root span opens when the run starts, each turn's spans as the turn ends."""

    def __init__(self, tracer: trace.Tracer, run: Run, started: float) -> None:
        conv = run.conversation
        self._tracer = tracer
        self._parts = RunParts(started)
        attributes: dict[str, Any] = {
            "parley.team": conv.team.name,
            "parley.pattern": conv.team.pattern,
            "parley.model": conv.model,
            "parley.run": run.number,
            "gen_ai.conversation.id": conv.id,
        }
        if conv.thread_id is not None:
            attributes["parley.thread_id"] = conv.thread_id
        self.root: Span = tracer.start_span(
            f"run {conv.team.name}", start_time=_ns(started), attributes=attributes
        )
        self._context: Context = trace.set_span_in_context(self.root)
        self._db = (
            "postgresql" if conv.store is not None and conv.store.url.startswith("postgres") else "sqlite"
        )

    def event(self, ev: Event) -> bool:
        """Take the run's next event; True once the run has ended (and its span with it)."""
        for part in self._parts.add(ev):
            self._export(part, self._context)
        match ev:
            case RunStartedEvent():
                self.root.set_attribute("parley.roles", ev.roles)
            case HumanMessageEvent():
                self.root.add_event("human_message", {"parley.mode": ev.mode}, timestamp=_ns(ev.ts))
            case ValidationEvent(passed=False):
                attributes = {"parley.role": ev.source, "parley.attempt": ev.attempt}
                self.root.add_event("validation_failed", attributes, timestamp=_ns(ev.ts))
            case VoteEvent():
                attributes = {"parley.vote.round": ev.round, "parley.vote.outcome": ev.outcome}
                self.root.add_event("vote", attributes, timestamp=_ns(ev.ts))
            case ErrorEvent():
                self.root.add_event("error", {"error.type": ev.error_type}, timestamp=_ns(ev.ts))
            case RunResult():
                self._end(ev)
                return True
            case _:
                pass
        return False

    def store_write(
        self, start: float, end: float, items: Sequence[Event | Checkpoint], error: BaseException | None
    ) -> None:
        """A batch of the run's events written to the store (see Run.on_store_write)."""
        events = sum(1 for item in items if not isinstance(item, (Checkpoint, ChunkEvent)))
        checkpoint = any(isinstance(item, Checkpoint) for item in items)
        if not events and not checkpoint:
            return  # streamed pieces only: nothing was written
        attributes = {
            "db.system.name": self._db,
            "db.operation.name": "append_batch",
            "parley.store.events": events,
            "parley.store.checkpoint": checkpoint,
        }
        part = Part("store write", start, end, attributes, error=type(error).__name__ if error else None)
        self._export(part, self._context)

    def abandon(self, why: str) -> None:
        """The run's events stopped coming (a bug, or the event loop ended first): close its span so it is sent."""
        self.root.set_status(Status(StatusCode.ERROR, why))
        self.root.end()

    def _end(self, result: RunResult) -> None:
        root = self.root
        root.set_attributes(
            {
                "parley.stop_reason": result.stop_reason,
                "parley.turns": result.turns,
                "parley.usage.input_tokens": result.prompt_tokens,
                "parley.usage.output_tokens": result.completion_tokens,
            }
        )
        if result.cost_usd is not None:
            root.set_attribute("parley.cost_usd", result.cost_usd)
        if result.stop_reason == "error":
            root.set_attribute("error.type", "run_error")
            root.set_status(Status(StatusCode.ERROR, result.detail))
        root.end(end_time=_ns(max(result.ts, time.time())))  # now: the result is stored and shown

    def _export(self, part: Part, parent: Context) -> None:
        kind = SpanKind.CLIENT if part.kind == "client" else SpanKind.INTERNAL
        span = self._tracer.start_span(
            part.name, context=parent, kind=kind, start_time=_ns(part.start), attributes=part.attributes
        )
        if part.error is not None:
            span.set_attribute("error.type", part.error)
            span.set_status(Status(StatusCode.ERROR, part.error))
        inner = trace.set_span_in_context(span)
        for child in part.children:
            self._export(child, inner)
        span.end(end_time=_ns(max(part.end, part.start)))
