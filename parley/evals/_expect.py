"""Checking a finished run against a scenario's expectations: passed, failed (saying why), or skipped."""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

from .._text import one_line
from .._validate import PATTERN_TIMEOUT_S, TOO_SLOW, PatternError, pattern_found
from ..events import (
    EscalationEvent,
    Event,
    MessageEvent,
    RunResult,
    SubtaskEvent,
    ToolCallEvent,
    VoteEvent,
)
from ..projection import Projection
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
    evidence: list[str] = field(default_factory=list[str])
    """The messages or events that show why (for failures)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Observed:
    """What a run did, in the terms expectations speak."""

    events: list[Event]
    result: RunResult
    latency_s: float

    @cached_property
    def projection(self) -> Projection:
        """What the events add up to (files written, usage per speaker, ...), as every adapter derives it."""
        return Projection.of(self.events)

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


def _final(seen: Observed) -> str:
    return f"final answer: {_clip(seen.final)!r}"


def _first_seen(speakers: list[str]) -> list[str]:
    out: list[str] = []
    for s in speakers:
        if s not in out:
            out.append(s)
    return out


def _tool_calls(seen: Observed) -> list[ToolCallEvent]:
    return [e for e in seen.events if isinstance(e, ToolCallEvent)]


def _args_match(actual: dict[str, Any] | str, wanted: dict[str, Any]) -> bool:
    return isinstance(actual, dict) and all(
        k in actual and str(actual[k]) == str(v) for k, v in wanted.items()
    )


def _verdict(kind: str, value: Any, ok: bool, why: str, evidence: list[str] | None = None) -> Outcome:
    """Passed, or failed saying `why`; the evidence goes with either."""
    return Outcome(kind, value, "passed" if ok else "failed", "" if ok else why, evidence or [])


def _final_contains(exp: Expectation, seen: Observed) -> Outcome:
    value = exp.value
    return _verdict(
        exp.kind,
        value,
        value.lower() in seen.final.lower(),
        f"the final answer does not contain {value!r}",
        [_final(seen)],
    )


def _final_matches(exp: Expectation, seen: Observed) -> Outcome:
    kind, value = exp.kind, exp.value
    try:
        ok = pattern_found(value, seen.final)
    except TimeoutError:  # a pattern that backtracks without end on this answer: bounded, and said so
        return Outcome(
            kind, value, "failed", f"{TOO_SLOW} (/{value}/, limit {PATTERN_TIMEOUT_S:g} s)", [_final(seen)]
        )
    except PatternError as exc:  # valid for Python's `re` (the suite loader's check) but not for `regex`
        return Outcome(kind, value, "failed", f"the pattern /{value}/ cannot be used: {exc}", [_final(seen)])
    return _verdict(kind, value, ok, f"the final answer does not match /{value}/", [_final(seen)])


def _spoke(exp: Expectation, seen: Observed) -> Outcome:
    said = set(seen.speakers)
    missing = [r for r in exp.value if r not in said]
    return _verdict(
        exp.kind,
        exp.value,
        not missing,
        f"{', '.join(missing)} never spoke",
        [f"speakers: {', '.join(_first_seen(seen.speakers))}"],
    )


def _not_spoke(exp: Expectation, seen: Observed) -> Outcome:
    said = set(seen.speakers)
    spoke = [r for r in exp.value if r in said]
    evidence = [f"[{m.turn}] {m.source}: {_clip(m.content)}" for m in seen.messages if m.source in spoke][:3]
    return _verdict(exp.kind, exp.value, not spoke, f"{', '.join(spoke)} spoke", evidence)


def _speaker_order(exp: Expectation, seen: Observed) -> Outcome:
    value = exp.value
    order = [s for s in _first_seen(seen.speakers) if s in value]
    return _verdict(
        exp.kind,
        value,
        order == list(value),
        f"first appearances were {' → '.join(order) or 'none of them'}, not {' → '.join(value)}",
        [f"speakers: {' → '.join(_first_seen(seen.speakers))}"],
    )


def _calls_of(seen: Observed, spec: ToolCalled | str | None) -> tuple[str, list[ToolCallEvent], list[str]]:
    """The tool a spec names, its calls, and those calls as evidence."""
    name = spec.name if isinstance(spec, ToolCalled) else str(spec)
    calls = [c for c in _tool_calls(seen) if c.name == name]
    return name, calls, [f"[{c.turn}] {c.source} called {c.name} {c.arguments}" for c in calls][:5]


def _tool_called(exp: Expectation, seen: Observed) -> Outcome:
    spec = exp.tool_called
    name, calls, evidence = _calls_of(seen, spec)
    wanted = spec.args_contain if isinstance(spec, ToolCalled) else {}
    if any(_args_match(c.arguments, wanted) for c in calls):
        return Outcome(exp.kind, exp.value, "passed")
    why = f"{name} was never called" if not calls else f"no call to {name} had arguments {wanted}"
    called = ", ".join(sorted({c.name for c in _tool_calls(seen)})) or "none"
    return Outcome(exp.kind, exp.value, "failed", why, evidence or [f"tools called: {called}"])


def _tool_not_called(exp: Expectation, seen: Observed) -> Outcome:
    name, calls, evidence = _calls_of(seen, exp.tool_not_called)
    return _verdict(exp.kind, exp.value, not calls, f"{name} was called {len(calls)} time(s)", evidence)


def _escalated(exp: Expectation, seen: Observed) -> Outcome:
    escalations = [e for e in seen.events if isinstance(e, EscalationEvent)]
    why = "no escalation was raised" if exp.value else f"{len(escalations)} escalation(s) were raised"
    return _verdict(
        exp.kind,
        exp.value,
        bool(escalations) == exp.value,
        why,
        [f"[{e.turn}] {e.kind}: {_clip(e.content)}" for e in escalations][:3],
    )


def _stop_reason(exp: Expectation, seen: Observed) -> Outcome:
    r = seen.result
    return _verdict(
        exp.kind, exp.value, r.stop_reason == exp.value, f"the run stopped with {r.stop_reason} ({r.detail})"
    )


def _max_turns(exp: Expectation, seen: Observed) -> Outcome:
    turns = seen.result.turns
    return _verdict(exp.kind, exp.value, turns <= exp.value, f"the run took {turns} turns")


def _max_total_tokens(exp: Expectation, seen: Observed) -> Outcome:
    total = seen.result.prompt_tokens + seen.result.completion_tokens
    return _verdict(exp.kind, exp.value, total <= exp.value, f"the run used {total:,} tokens")


def _max_cost_usd(exp: Expectation, seen: Observed) -> Outcome:
    cost = seen.result.cost_usd
    if cost is None:
        return Outcome(exp.kind, exp.value, "skipped", "the cost is unknown (no price for this model)")
    return _verdict(exp.kind, exp.value, cost <= exp.value, f"the run cost ${cost:.4f}")


def _max_latency_s(exp: Expectation, seen: Observed) -> Outcome:
    return _verdict(exp.kind, exp.value, seen.latency_s <= exp.value, f"the run took {seen.latency_s:.2f} s")


def _file_written(exp: Expectation, seen: Observed) -> Outcome:
    names = [e.name for e in seen.projection.files]
    return _verdict(
        exp.kind,
        exp.value,
        any(fnmatch.fnmatch(n, exp.value) for n in names),
        f"no file matching {exp.value} was written",
        [f"files written: {', '.join(names) or 'none'}"],
    )


def _vote_decision(exp: Expectation, seen: Observed) -> Outcome:
    votes = [e for e in seen.events if isinstance(e, VoteEvent)]
    decided = next((e.decision for e in reversed(votes) if e.decision is not None), None)
    why = f"the vote decided {decided!r}" if decided else "no vote was decided"
    return _verdict(
        exp.kind,
        exp.value,
        decided is not None and decided.lower() == str(exp.value).lower(),
        why,
        [_clip(e.content) for e in votes][:4],
    )


def _delegated_to(exp: Expectation, seen: Observed) -> Outcome:
    workers = {e.worker for e in seen.events if isinstance(e, SubtaskEvent) and e.status == "started"}
    missing = [w for w in exp.value if w not in workers]
    return _verdict(
        exp.kind,
        exp.value,
        not missing,
        f"no sub-task went to {', '.join(missing)}",
        [f"delegated to: {', '.join(sorted(workers)) or 'nobody'}"],
    )


CHECKS: dict[str, Callable[[Expectation, Observed], Outcome]] = {
    "final_contains": _final_contains,
    "final_matches": _final_matches,
    "spoke": _spoke,
    "not_spoke": _not_spoke,
    "speaker_order": _speaker_order,
    "tool_called": _tool_called,
    "tool_not_called": _tool_not_called,
    "escalated": _escalated,
    "stop_reason": _stop_reason,
    "max_turns": _max_turns,
    "max_total_tokens": _max_total_tokens,
    "max_cost_usd": _max_cost_usd,
    "max_latency_s": _max_latency_s,
    "file_written": _file_written,
    "vote_decision": _vote_decision,
    "delegated_to": _delegated_to,
}
"""Every expectation kind but `judge` (which needs a model: `check_all`)."""


def check(exp: Expectation, seen: Observed) -> Outcome:
    try:
        checker = CHECKS[exp.kind]
    except KeyError:
        raise AssertionError(f"unhandled expectation {exp.kind}") from None
    return checker(exp, seen)


async def check_all(
    expectations: list[Expectation], seen: Observed, task: str, judge: Judge | None
) -> list[Outcome]:
    out: list[Outcome] = []
    for exp in expectations:
        if exp.kind != "judge":
            out.append(check(exp, seen))
        elif judge is None:
            out.append(
                Outcome(
                    "judge",
                    exp.judge,
                    "skipped",
                    "needs a live judge model (--judge-model); not counted as passed",
                )
            )
        else:
            try:
                ok, reason = await judge(str(exp.judge), task, seen.transcript())
            except Exception as exc:
                out.append(
                    Outcome(
                        "judge", exp.judge, "skipped", f"the judge model failed: {type(exc).__name__}: {exc}"
                    )
                )
                continue
            out.append(Outcome("judge", exp.judge, "passed" if ok else "failed", reason, [_final(seen)]))
    return out
