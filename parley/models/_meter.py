"""The meter: every model call of a conversation, the selector's included, in one ledger, and its retry policy.

The clients that record into it live in the engine (parley.engine.autogen.models)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ParleyError


class BudgetExceeded(ParleyError):
    """Raised instead of making a model call once the conversation's token budget is spent."""


@dataclass(frozen=True, kw_only=True)
class CallRecord:
    """One model call."""

    source: str
    """Role name, or `selector`."""
    model: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    """True when counted with tiktoken because the backend reported no usage."""
    reflection: bool = False
    """The call answered tool results (AutoGen's reflection on tool use), rather than starting a turn."""
    cancelled: bool = False
    """The call was cut short (interrupt, stop, time-out): its prompt was sent, part of a reply may have come."""
    cost_usd: float | None
    latency_s: float
    finish_reason: str | None = None
    """The backend's finish reason (`stop`, `length`, `function_calls`, ...); None when cut short."""


@dataclass(frozen=True, kw_only=True)
class CallFailure:
    """A model call that failed for good (after any retries)."""

    source: str
    model: str
    error_type: str
    message: str
    error: BaseException | None = None
    """The exception itself (the backend's own, or parley's ContextOverflowError)."""


@dataclass(frozen=True, kw_only=True)
class Retry:
    """A transient failure about to be retried."""

    source: str
    model: str
    error: str
    attempt: int
    """The attempt that failed (1 for the first call)."""
    attempts: int
    delay_s: float
    empty: bool = False
    """The model answered nothing (no text, no tool call): asked once more, at once."""


DEFAULT_REPLY_CAP = 1024
"""A call's reply cap when its client was given none (the selector's, the summariser's): parley.spec's default."""

TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
_TRANSIENT_NAMES = (
    "Timeout",
    "TimedOut",
    "Connection",
    "ConnectError",
    "RateLimit",
    "InternalServer",
    "ServiceUnavailable",
    "Overloaded",
    "RemoteProtocol",
    "ReadError",
    "WriteError",
)
# "ConnectError": httpx's refused connection, which the Ollama client lets through as is when streaming.


def transient(exc: BaseException) -> bool:
    """A failure worth retrying: time-outs, dropped connections, 408/409/425/429 and 5xx answers."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in TRANSIENT_STATUS or status >= 500
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    return any(part in type(exc).__name__ for part in _TRANSIENT_NAMES)


def retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        value = headers.get("retry-after") if headers is not None else None
        return min(float(value), 60.0) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class Meter:
    """Token and cost ledger shared by every client of one conversation, and its retry policy."""

    budget: int | None = None
    calls: list[CallRecord] = field(default_factory=list)
    failures: list[CallFailure] = field(default_factory=list)
    listeners: list[Callable[[CallRecord], None]] = field(default_factory=list)
    retries: int = 3
    """Transient failures retried per model call (the backends' own SDK retries are off: these are visible)."""
    backoff_s: float = 1.0
    """First delay; doubled each attempt, with ±50% jitter, at most `max_backoff_s` (or the server's Retry-After)."""
    max_backoff_s: float = 20.0
    retry_listeners: list[Callable[[Retry], None]] = field(default_factory=list)
    call_ids: set[str] = field(default_factory=set)
    """Every tool-call id given out in this conversation: a model's id is used once, or replaced."""
    _prompt: int = field(default=0, init=False, repr=False)
    _completion: int = field(default=0, init=False, repr=False)
    """Running totals of `calls`, kept by `record`: read on every call, they must not cost a pass over the list."""

    def __post_init__(self) -> None:
        self._prompt = sum(c.prompt_tokens for c in self.calls)
        self._completion = sum(c.completion_tokens for c in self.calls)

    def delay(self, attempt: int, exc: BaseException) -> float:
        after = retry_after(exc)
        if after is not None:
            return after
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.5)

    @property
    def prompt_tokens(self) -> int:
        return self._prompt

    @property
    def completion_tokens(self) -> int:
        return self._completion

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_usd(self) -> float | None:
        """Total cost, or None when any call's price is unknown."""
        costs = [c.cost_usd for c in self.calls]
        if any(c is None for c in costs):
            return None
        return float(sum(c for c in costs if c is not None))

    def exceeded(self) -> bool:
        return self.budget is not None and self.total_tokens >= self.budget

    def record(self, rec: CallRecord) -> None:
        self.calls.append(rec)
        self._prompt += rec.prompt_tokens
        self._completion += rec.completion_tokens
        for listener in list(self.listeners):
            listener(rec)

    def by_source(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for c in self.calls:
            p, q = out.get(c.source, (0, 0))
            out[c.source] = (p + c.prompt_tokens, q + c.completion_tokens)
        return out
