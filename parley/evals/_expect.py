"""Checking a finished run against a scenario's expectations: passed, failed (saying why), or skipped."""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .._text import one_line
from .._validate import PATTERN_TIMEOUT_S, TOO_SLOW, PatternError, pattern_found
from ..events import (
    EscalationEvent,
    Event,
    FileEvent,
    MessageEvent,
    RunResult,
    SubtaskEvent,
    ToolCallEvent,
    VoteEvent,
)
from ._suite import Expectation, ToolCalled

Judge = Callable[[str, str, str], Awaitable[tuple[bool, str]]]
"""(question, task, transcript) -> (passed, reason): a live model's verdict."""
CLIP = 300


@dataclass
class Outcome:
    kind: str
    value: Any
    outcome: Literal["passed", "failed", "skipped"]
    message: str = ""
    evidence: list[str] = field(default_factory=list)
    """The messages or events that show why (for failures)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Observed:
    """What a run did, in the terms expectations speak."""

    events: list[Event]
    result: RunResult
    latency_s: float

    @property
    def messages(self) -> list[MessageEvent]:
        return [e for e in self.events if isinstance(e, MessageEvent)]

    @property
    def speakers(self) -> list[str]:
        return [m.source for m in self.messages if m.kind == "text" or m.kind == "tool_summary"]

    @property
    def final(self) -> str:
        return self.result.content

    def transcript(self, limit: int = 6000) -> str:
        text = "\n".join(f"[{m.turn}] {m.source}: {m.content}" for m in self.messages)
        return text[-limit:]


def _clip(text: str) -> str:
    return one_line(text, CLIP)


def _first_seen(speakers: list[str]) -> list[str]:
    out: list[str] = []
    for s in speakers:
        if s not in out:
            out.append(s)
    return out


def _tool_calls(seen: Observed) -> list[ToolCallEvent]:
    return [e for e in seen.events if isinstance(e, ToolCallEvent)]


def _args_match(actual: Any, wanted: dict[str, Any]) -> bool:
    return isinstance(actual, dict) and all(k in actual and str(actual[k]) == str(v) for k, v in wanted.items())


def check(exp: Expectation, seen: Observed) -> Outcome:
    kind, value = exp.kind, exp.value
    final = f"final answer: {_clip(seen.final)!r}"
    if kind == "final_contains":
        ok = value.lower() in seen.final.lower()
        return Outcome(kind, value, "passed" if ok else "failed", "" if ok else f"the final answer does not contain {value!r}", [final])
    if kind == "final_matches":
        try:
            ok = pattern_found(value, seen.final)
        except TimeoutError:  # a pattern that backtracks without end on this answer: bounded, and said so
            return Outcome(kind, value, "failed", f"{TOO_SLOW} (/{value}/, limit {PATTERN_TIMEOUT_S:g} s)", [final])
        except PatternError as exc:  # valid for Python's `re` (the suite loader's check) but not for `regex`
            return Outcome(kind, value, "failed", f"the pattern /{value}/ cannot be used: {exc}", [final])
        return Outcome(kind, value, "passed" if ok else "failed", "" if ok else f"the final answer does not match /{value}/", [final])
    said = set(seen.speakers)
    if kind == "spoke":
        missing = [r for r in value if r not in said]
        return Outcome(kind, value, "failed" if missing else "passed",
                       f"{', '.join(missing)} never spoke" if missing else "", [f"speakers: {', '.join(_first_seen(seen.speakers))}"])
    if kind == "not_spoke":
        spoke = [r for r in value if r in said]
        evidence = [f"[{m.turn}] {m.source}: {_clip(m.content)}" for m in seen.messages if m.source in spoke][:3]
        return Outcome(kind, value, "failed" if spoke else "passed", f"{', '.join(spoke)} spoke" if spoke else "", evidence)
    if kind == "speaker_order":
        order = [s for s in _first_seen(seen.speakers) if s in value]
        ok = order == list(value)
        return Outcome(kind, value, "passed" if ok else "failed",
                       "" if ok else f"first appearances were {' → '.join(order) or 'none of them'}, not {' → '.join(value)}",
                       [f"speakers: {' → '.join(_first_seen(seen.speakers))}"])
    if kind in ("tool_called", "tool_not_called"):
        spec = exp.tool_called if kind == "tool_called" else exp.tool_not_called
        name = spec.name if isinstance(spec, ToolCalled) else str(spec)
        wanted = spec.args_contain if isinstance(spec, ToolCalled) else {}
        calls = [c for c in _tool_calls(seen) if c.name == name]
        matching = [c for c in calls if _args_match(c.arguments, wanted)]
        evidence = [f"[{c.turn}] {c.source} called {c.name} {c.arguments}" for c in calls][:5]
        if kind == "tool_not_called":
            return Outcome(kind, value, "failed" if calls else "passed", f"{name} was called {len(calls)} time(s)" if calls else "", evidence)
        if matching:
            return Outcome(kind, value, "passed")
        why = f"{name} was never called" if not calls else f"no call to {name} had arguments {wanted}"
        return Outcome(kind, value, "failed", why, evidence or [f"tools called: {', '.join(sorted({c.name for c in _tool_calls(seen)})) or 'none'}"])
    if kind == "escalated":
        escalations = [e for e in seen.events if isinstance(e, EscalationEvent)]
        ok = bool(escalations) == value
        return Outcome(kind, value, "passed" if ok else "failed",
                       "" if ok else ("no escalation was raised" if value else f"{len(escalations)} escalation(s) were raised"),
                       [f"[{e.turn}] {e.kind}: {_clip(e.content)}" for e in escalations][:3])
    if kind == "stop_reason":
        ok = seen.result.stop_reason == value
        return Outcome(kind, value, "passed" if ok else "failed",
                       "" if ok else f"the run stopped with {seen.result.stop_reason} ({seen.result.detail})")
    return _check_limits(exp, seen)


def _check_limits(exp: Expectation, seen: Observed) -> Outcome:
    kind, value, r = exp.kind, exp.value, seen.result
    if kind == "max_turns":
        ok = r.turns <= value
        return Outcome(kind, value, "passed" if ok else "failed", "" if ok else f"the run took {r.turns} turns")
    if kind == "max_total_tokens":
        total = r.prompt_tokens + r.completion_tokens
        ok = total <= value
        return Outcome(kind, value, "passed" if ok else "failed", "" if ok else f"the run used {total:,} tokens")
    if kind == "max_cost_usd":
        if r.cost_usd is None:
            return Outcome(kind, value, "skipped", "the cost is unknown (no price for this model)")
        ok = r.cost_usd <= value
        return Outcome(kind, value, "passed" if ok else "failed", "" if ok else f"the run cost ${r.cost_usd:.4f}")
    if kind == "max_latency_s":
        ok = seen.latency_s <= value
        return Outcome(kind, value, "passed" if ok else "failed", "" if ok else f"the run took {seen.latency_s:.2f} s")
    if kind == "file_written":
        names = [e.name for e in seen.events if isinstance(e, FileEvent)]
        ok = any(fnmatch.fnmatch(n, value) for n in names)
        return Outcome(kind, value, "passed" if ok else "failed", "" if ok else f"no file matching {value} was written",
                       [f"files written: {', '.join(names) or 'none'}"])
    if kind == "vote_decision":
        votes = [e for e in seen.events if isinstance(e, VoteEvent) and e.decision is not None]
        decided = votes[-1].decision if votes else None
        ok = decided is not None and decided.lower() == str(value).lower()
        return Outcome(kind, value, "passed" if ok else "failed",
                       "" if ok else (f"the vote decided {decided!r}" if decided else "no vote was decided"),
                       [_clip(e.content) for e in seen.events if isinstance(e, VoteEvent)][:4])
    if kind == "delegated_to":
        workers = {e.worker for e in seen.events if isinstance(e, SubtaskEvent) and e.status == "started"}
        missing = [w for w in value if w not in workers]
        return Outcome(kind, value, "failed" if missing else "passed",
                       f"no sub-task went to {', '.join(missing)}" if missing else "",
                       [f"delegated to: {', '.join(sorted(workers)) or 'nobody'}"])
    raise AssertionError(f"unhandled expectation {kind}")


async def check_all(expectations: list[Expectation], seen: Observed, task: str, judge: Judge | None) -> list[Outcome]:
    out = []
    for exp in expectations:
        if exp.kind != "judge":
            out.append(check(exp, seen))
        elif judge is None:
            out.append(Outcome("judge", exp.judge, "skipped", "needs a live judge model (--judge-model); not counted as passed"))
        else:
            try:
                ok, reason = await judge(str(exp.judge), task, seen.transcript())
            except Exception as exc:
                out.append(Outcome("judge", exp.judge, "skipped", f"the judge model failed: {type(exc).__name__}: {exc}"))
                continue
            out.append(Outcome("judge", exp.judge, "passed" if ok else "failed", reason, [f"final answer: {_clip(seen.final)!r}"]))
    return out
