"""Failure-mode findings: what went wrong in a run, named as the MAST study of multi-agent failures names it.

The detectors here need only a run's events (and, for two of them, what the team granted each role and which of
the scenario's expectations failed). Each finding says its mode, the mode's group, the turn, the role and the
evidence. The modes no rule can see are asked of a judge model (`_findings_judge`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from typing import Any

from .._text import one_line
from ..events import (
    AnswerEvent,
    ApprovalRequestEvent,
    Event,
    HumanMessageEvent,
    MessageEvent,
    NoteEvent,
    QuestionEvent,
    RunResult,
    RunStartedEvent,
    SubtaskEvent,
    ToolCallEvent,
    ToolResultEvent,
    ValidationEvent,
)
from ..projection import Projection

__all__ = ["GROUPS", "JUDGED", "MODES", "Finding", "content_words", "detect", "similar", "words_of"]

SPECIFICATION, MISALIGNMENT, VERIFICATION = "specification", "inter-agent misalignment", "task verification"
GROUPS = (SPECIFICATION, MISALIGNMENT, VERIFICATION)

MODES: dict[str, str] = {
    "disobey task specification": SPECIFICATION,
    "disobey role specification": SPECIFICATION,
    "step repetition": SPECIFICATION,
    "loss of conversation history": SPECIFICATION,
    "unaware of termination conditions": SPECIFICATION,
    "conversation reset": MISALIGNMENT,
    "fail to ask for clarification": MISALIGNMENT,
    "task derailment": MISALIGNMENT,
    "information withholding": MISALIGNMENT,
    "ignored other agent's input": MISALIGNMENT,
    "reasoning-action mismatch": MISALIGNMENT,
    "premature termination": VERIFICATION,
    "no or incomplete verification": VERIFICATION,
    "incorrect verification": VERIFICATION,
}
"""The fourteen failure modes of MAST ("Why Do Multi-Agent LLM Systems Fail?", 2025), each with its group."""

RULED = (
    "step repetition",
    "unaware of termination conditions",
    "premature termination",
    "ignored other agent's input",
    "conversation reset",
    "disobey role specification",
)
"""The modes a rule detects from the events."""
JUDGED = tuple(m for m in MODES if m not in RULED)
"""The modes only a judge model can see; `disobey role specification` is ruled on tools and voice only."""

CLIP = 240
SIMILAR = 0.9
"""Two messages this alike (difflib's ratio of their words, case and punctuation aside) say the same thing."""
MAX_WORDS = 5000
"""A message longer than this compares its first MAX_WORDS words (a bound on the work a hostile run can cause)."""
NORMAL_ENDS = frozenset({"stop_text", "completed", "handoff"})
"""Ends where the team itself said it was done."""
NEVER_HAPPENED = frozenset({"spoke", "delegated_to", "file_written"})
"""Expectations whose failure means a step never happened (a role never spoke, no sub-task, no file)."""


@dataclass(frozen=True)
class Finding:
    mode: str
    """The MAST name of the failure mode."""
    turn: int
    role: str
    evidence: str
    by: str = "rule"
    """`rule` (a detector of this module) or `judge` (the judge model)."""

    @property
    def group(self) -> str:
        return MODES[self.mode]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "group": self.group}


def _clip(text: str) -> str:
    return one_line(text, CLIP)


def words_of(text: str) -> tuple[str, ...]:
    """A text as it is compared: its words, lower-cased, without punctuation (the first MAX_WORDS)."""
    return tuple(re.findall(r"\w+", text.lower())[:MAX_WORDS])


def similar(
    a: tuple[str, ...], b: tuple[str, ...], bags: tuple[Counter[str], Counter[str]] | None = None
) -> bool:
    """Whether two texts (as `words_of`) say the same: the same words, or SIMILAR of them in the same order.
    Cheap bounds (lengths, then the words in common: `bags`, their counts, when known) rule most pairs out before
    difflib compares the order."""
    if a == b:
        return True
    if not a or not b or min(len(a), len(b)) < SIMILAR * max(len(a), len(b)):
        return False
    bag_a, bag_b = bags or (Counter(a), Counter(b))
    common = sum(min(bag_a[w], bag_b[w]) for w in bag_a.keys() & bag_b.keys())
    if 2 * common < SIMILAR * (len(a) + len(b)):
        return False
    return SequenceMatcher(None, a, b, autojunk=False).ratio() >= SIMILAR


# -- steps: what the roles did, in order ------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    """One thing a role did: a text message, or a tool call (with its result, once known)."""

    role: str
    turn: int
    what: str
    """The message's text, or `TOOL ARGUMENTS` (the arguments as canonical JSON)."""
    tool: bool
    result: str | None = None
    words: tuple[str, ...] = ()
    """A message's words, as `similar` compares them."""
    bag: Counter[str] = field(default_factory=Counter[str], compare=False)
    """How often each of them comes."""


def _args(arguments: dict[str, Any] | str) -> str:
    return json.dumps(arguments, sort_keys=True, default=str) if isinstance(arguments, dict) else arguments


def _steps(events: Sequence[Event]) -> list[_Step]:
    results = {e.call_id: e for e in events if isinstance(e, ToolResultEvent)}
    steps: list[_Step] = []
    for e in events:
        if isinstance(e, MessageEvent) and e.kind == "text" and e.content.strip():
            words = words_of(e.content)
            steps.append(_Step(e.source, e.turn, e.content, tool=False, words=words, bag=Counter(words)))
        elif isinstance(e, ToolCallEvent):
            done = results.get(e.call_id)
            result = None if done is None or done.is_error else done.content
            steps.append(_Step(e.source, e.turn, f"{e.name} {_args(e.arguments)}", tool=True, result=result))
    return steps


def _same(a: _Step, b: _Step) -> bool:
    """The same step again: the same role saying (nearly) the same, or calling the same tool with the same
    arguments and getting the same result it already had."""
    if a.role != b.role or a.tool != b.tool:
        return False
    if a.tool:
        return a.what == b.what and a.result is not None and a.result == b.result
    return similar(a.words, b.words, (a.bag, b.bag))


# -- the detectors ------------------------------------------------------------------------------------------


def _resets(steps: list[_Step]) -> tuple[list[Finding], set[int]]:
    """The conversation started over: two or more steps in a row replay its opening steps."""
    out: list[Finding] = []
    replayed: set[int] = set()
    k = 2
    while k + 1 < len(steps):
        n = 0
        while k + n < len(steps) and n < k and _same(steps[n], steps[k + n]):
            n += 1
        if n >= 2:
            first = steps[k]
            out.append(
                Finding(
                    "conversation reset",
                    first.turn,
                    first.role,
                    f"turns {first.turn}-{steps[k + n - 1].turn} replay the opening turns "
                    f"{steps[0].turn}-{steps[n - 1].turn}: {_clip(first.what)!r}",
                )
            )
            replayed.update(range(k, k + n))
            k += n
        else:
            k += 1
    return out, replayed


def _repetitions(steps: list[_Step], skip: set[int]) -> list[Finding]:
    """A role repeats one of its own earlier steps (near-identical text, or the same call with the same result)."""
    out: list[Finding] = []
    for i, step in enumerate(steps):
        if i in skip:
            continue
        earlier = next((s for s in steps[:i] if _same(s, step)), None)
        if earlier is None:
            continue
        what = "called again, with the same result" if step.tool else "said again"
        out.append(
            Finding(
                "step repetition",
                step.turn,
                step.role,
                f"{what} (first at turn {earlier.turn}): {_clip(step.what)!r}",
            )
        )
    return out


def _last_speaker(events: Sequence[Event]) -> tuple[str, str]:
    last = next((e for e in reversed(events) if isinstance(e, MessageEvent)), None)
    return (last.source, last.content) if last is not None else ("", "")


def _unaware(events: Sequence[Event], result: RunResult) -> list[Finding]:
    """The team ran to its turn cap: nobody recognised that the work was done (or could not be)."""
    if result.stop_reason != "max_turns":
        return []
    who, said = _last_speaker(events)
    return [
        Finding(
            "unaware of termination conditions",
            result.turns,
            who,
            f"the run stopped at its turn cap ({result.detail or 'max_turns'}) without any role ending it; "
            f"last message: {_clip(said)!r}",
        )
    ]


def _unmet(outcome: Mapping[str, Any]) -> bool:
    """A failed expectation that says a step never happened."""
    if outcome.get("outcome") != "failed":
        return False
    kind, message = outcome.get("kind"), str(outcome.get("message", ""))
    return (
        kind in NEVER_HAPPENED
        or (kind == "tool_called" and message.endswith("was never called"))
        or (kind == "vote_decision" and message == "no vote was decided")
    )


def _premature(
    events: Sequence[Event], result: RunResult, outcomes: Sequence[Mapping[str, Any]]
) -> list[Finding]:
    """The team said it was done while work was still open (a sub-task, an approval, a question), or before
    steps the scenario expects ever happened."""
    if result.stop_reason not in NORMAL_ENDS:
        return []
    projection = Projection()
    cut: list[Event] = []
    for e in events:
        cut = projection.apply(e)
    why = [f"still open: {type(e).__name__.removesuffix('Event').lower()} {_clip(e.content)!r}" for e in cut]
    why += [f"{o['kind']}: {o['message']}" for o in outcomes if _unmet(o)]
    if not why:
        return []
    who, _ = _last_speaker(events)
    ended = f"the run ended ({result.stop_reason}: {result.detail or 'done'}) after {result.turns} turns"
    return [Finding("premature termination", result.turns, who, f"{ended}; " + "; ".join(why))]


# -- a human's input ignored ----------------------------------------------------------------------------------

_STOP_TEXT = """a about above after again all also am an and any are as at be because been before being below between both
but by can could did do does doing done down during each else few for from further get got had has have having he her
here hers him his how i if in into is it its itself just let like make me more most my no nor not now of off on once
only or other our ours out over own please same she should so some such than thank thanks that the their them then
there these they this those through to too under until up us very was we were what when where which while who whom why
will with would yes you your yours ok okay sorry"""
_STOPWORDS = frozenset(_STOP_TEXT.split())


def _stem(word: str) -> str:
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("ly", ""), ("s", "")):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)] + keep
    return word


def content_words(text: str) -> set[str]:
    """The words that carry a text's meaning, stemmed: no stop words, no one- or two-letter words (numbers
    stay)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {_stem(w) for w in words if w not in _STOPWORDS and (len(w) > 2 or w.isdigit())}


def _agent_output(e: Event) -> str | None:
    """What a role wrote in this event (its words, a call's arguments, a sub-task it gave), None if not a role's."""
    if e.source == "user":
        return None
    if isinstance(e, MessageEvent):
        return e.content if e.kind == "text" else None
    if isinstance(e, ToolCallEvent):
        return _args(e.arguments)
    if isinstance(e, ApprovalRequestEvent):
        return _args(e.arguments)
    if isinstance(e, SubtaskEvent):
        return e.task if e.status == "started" else None
    if isinstance(e, NoteEvent | QuestionEvent | ValidationEvent):
        return e.content
    return None


def _human_inputs(events: Sequence[Event]) -> Iterable[tuple[int, Event]]:
    """A human's words the team should take in: interjections, interrupts and answers to its questions."""
    for i, e in enumerate(events):
        if (isinstance(e, HumanMessageEvent) and e.mode != "task") or (
            isinstance(e, AnswerEvent) and not e.timed_out
        ):
            yield i, e


def _ignored(events: Sequence[Event]) -> list[Finding]:
    """A human's message that nothing the team did after it reflects: not one of its content words appears in
    any role's words, calls, sub-tasks or notes after it arrived. Only messages the team had time for count (a
    role acted after it arrived); a message without content words cannot be tested."""
    out: list[Finding] = []
    for i, said in _human_inputs(events):
        words = content_words(said.content)
        after = [(e, text) for e in events[i + 1 :] if (text := _agent_output(e)) is not None]
        if not words or not after:
            continue
        if any(words & content_words(text) for _, text in after):
            continue
        nxt, answer = after[0]
        if isinstance(nxt, ToolCallEvent | ApprovalRequestEvent):
            answer = f"called {nxt.name} {answer}"
        kind = "answer" if isinstance(said, AnswerEvent) else "message"
        out.append(
            Finding(
                "ignored other agent's input",
                nxt.turn,
                nxt.source,
                f"the human's {kind} {_clip(said.content)!r} (after turn {said.turn}) is reflected nowhere after "
                f"it; next answer ({nxt.source}, turn {nxt.turn}): {_clip(answer)!r}",
            )
        )
    return out


# -- a role acting outside its role ------------------------------------------------------------------------


def _granted(name: str, grants: Sequence[str]) -> bool:
    """Whether a called tool is one of the grants (`TOOL`, `SERVER.TOOL`, `SERVER.*`; an MCP tool is called as
    `SERVER__TOOL`)."""
    for grant in grants:
        server, dot, tool = grant.partition(".")
        if name == grant or (dot and name in (f"{server}__{tool}", grant)):
            return True
        if dot and tool == "*" and (name.startswith(f"{server}__") or name.startswith(f"{server}.")):
            return True
    return False


def _ungranted_calls(events: Sequence[Event], grants: Mapping[str, Sequence[str]]) -> list[Finding]:
    out: list[Finding] = []
    for e in events:
        if not isinstance(e, ToolCallEvent | ApprovalRequestEvent) or e.source not in grants:
            continue
        if _granted(e.name, grants[e.source]):
            continue
        allowed = ", ".join(grants[e.source]) or "none"
        out.append(
            Finding(
                "disobey role specification",
                e.turn,
                e.source,
                f"called {e.name} {_clip(_args(e.arguments))}, a tool not granted to {e.source} (granted: {allowed})",
            )
        )
    return out


def _roles(events: Sequence[Event], grants: Mapping[str, Sequence[str]] | None) -> set[str]:
    started = next((e for e in events if isinstance(e, RunStartedEvent)), None)
    return set(started.roles if started else []) | set(grants or {})


def _voice(text: str, others: Iterable[str]) -> str | None:
    """The role (or the human) whose voice a message opens in: `Name:`, `**Name**:`, `[Name]`, `As the name,`."""
    head = text.lstrip(" \t\n#>*_")[:120].lower()
    for other in others:
        name = re.escape(other.lower())
        if re.match(rf"(\[{name}\]|{name}[*_]*\s*:|as (the )?{name}\s*,)", head):
            return other
    return None


def _other_voices(events: Sequence[Event], roles: set[str]) -> list[Finding]:
    out: list[Finding] = []
    for e in events:
        if isinstance(e, MessageEvent) and e.kind == "text" and e.source in roles:
            voice = _voice(e.content, [*sorted(roles - {e.source}), "user", "human"])
            if voice is not None:
                out.append(
                    Finding(
                        "disobey role specification",
                        e.turn,
                        e.source,
                        f"{e.source} wrote in {voice}'s voice: {_clip(e.content)!r}",
                    )
                )
    return out


def detect(
    events: Sequence[Event],
    *,
    grants: Mapping[str, Sequence[str]] | None = None,
    outcomes: Sequence[Mapping[str, Any]] = (),
) -> list[Finding]:
    """Every failure mode the rules find in a run's events, by turn. `grants`: each role's granted tools (hand-offs
    as `transfer_to_ROLE`), None when not known (tools are then not checked); `outcomes`: the scenario's
    expectation outcomes (as in results.jsonl), for premature termination."""
    result = next((e for e in reversed(events) if isinstance(e, RunResult)), None)
    steps = _steps(events)
    resets, replayed = _resets(steps)
    found = [*resets, *_repetitions(steps, replayed), *_ignored(events)]
    found += _other_voices(events, _roles(events, grants))
    if grants is not None:
        found += _ungranted_calls(events, grants)
    if result is not None:
        found += [*_unaware(events, result), *_premature(events, result, outcomes)]
    return sorted(found, key=lambda f: f.turn)
