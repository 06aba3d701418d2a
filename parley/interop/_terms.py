"""AutoGen termination conditions to parley's `termination:` and back.

parley ends a run when any one of its limits is reached, so an AutoGen `|` maps whenever each side does; an `&`
(every side must hold) maps only when its sides are limits of one kind (the larger then decides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from ._component import Findings, Part, quote

__all__ = ["Limits", "read_termination", "termination_component"]

AGENTCHAT = "autogen_agentchat"
NUMERIC = ("max_turns", "max_tokens", "timeout_s")


@dataclass(frozen=True)
class Limits:
    """The limits one AutoGen condition (or a combination) stands for; None where it sets none."""

    max_turns: int | None = None
    max_tokens: int | None = None
    timeout_s: float | None = None
    stop_text: str | None = None
    stop_from: frozenset[str] | None = None
    """Who may say `stop_text`; None for anyone."""
    handoff_user: bool = False
    """Ends when a role hands the conversation to the user (a swarm's own behaviour in parley)."""

    def kinds(self) -> set[str]:
        return {f.name for f in fields(self) if getattr(self, f.name) not in (None, False)} - {"stop_from"}


def read_termination(part: Part, swarm: bool, found: Findings) -> Limits | None:
    """The limits of one condition, or None (with a problem or a note in `found`) when it has no equivalent."""
    kind = part.kind
    if kind in ("OrTerminationCondition", "AndTerminationCondition"):
        return _combined(part, swarm, found, either=kind.startswith("Or"))
    reader = _LEAVES.get(kind)
    if reader is None:
        found.problem(part.path, _unmapped(kind))
        return None
    return reader(part, swarm, found)


def _unmapped(kind: str) -> str:
    reasons = {
        "SourceMatchTermination": "parley has no 'stop after this role speaks'; use stop_text with stop_from, or "
        "max_turns",
        "TextMessageTermination": "parley has no 'stop at the first text message'; use stop_text or max_turns",
        "FunctionCallTermination": "parley does not stop on a tool's result; have the role say a stop text "
        "after the call",
        "FunctionalTermination": "its Python function is not part of the JSON (and parley would not run it); "
        "use max_turns, stop_text, max_tokens or timeout_s",
    }
    what = quote(kind) if kind not in reasons else kind
    return (
        f"termination condition {what} has no parley equivalent: "
        + reasons.get(
            kind,
            "parley knows MaxMessage, TextMention, TokenUsage, Timeout and Handoff(user) "
            "conditions, combined with | (and & of one kind)",
        )
        + "; change it in AutoGen and export again, or remove it from the JSON and set termination: by hand"
    )


def _combined(part: Part, swarm: bool, found: Findings, *, either: bool) -> Limits | None:
    sides: list[Limits | None] = []
    for where, value in part.children("conditions"):
        child = Part.of(value, where)
        if child is None:
            found.problem(where, "not a termination condition (no `provider`)")
            sides.append(None)
        else:
            sides.append(read_termination(child, swarm, found))
    known = [s for s in sides if s is not None]
    if len(known) != len(sides) or not known:
        return None
    result = known[0]
    for side in known[1:]:
        merged = _either(result, side) if either else _both(result, side)
        if isinstance(merged, str):
            found.problem(part.path, merged)
            return None
        result = merged
    return result


def _either(a: Limits, b: Limits) -> Limits | str:
    """`a | b`: the tighter of each limit."""
    text = a.stop_text or b.stop_text
    if a.stop_text and b.stop_text and a.stop_text != b.stop_text:
        return (
            f"two stop texts ({quote(a.stop_text)} | {quote(b.stop_text)}): a parley team has one stop_text; "
            "keep one TextMentionTermination"
        )
    sources = None
    if a.stop_from is not None and b.stop_from is not None:
        sources = a.stop_from | b.stop_from
    elif not (a.stop_text and b.stop_text):
        sources = a.stop_from if a.stop_text else b.stop_from
    values = {n: _pick(min, getattr(a, n), getattr(b, n)) for n in NUMERIC}
    return Limits(**values, stop_text=text, stop_from=sources, handoff_user=a.handoff_user or b.handoff_user)


def _both(a: Limits, b: Limits) -> Limits | str:
    """`a & b`: maps only when both are the same single limit (the later one then decides)."""
    if a == b or not b.kinds():
        return a
    if not a.kinds():
        return b
    kinds = a.kinds() | b.kinds()
    if len(kinds) == 1 and kinds <= set(NUMERIC):
        name = next(iter(kinds))
        return replace(a, **{name: _pick(max, getattr(a, name), getattr(b, name))})
    return (
        "& (end only when every condition holds) has no parley equivalent: a parley run ends when any one limit "
        "is reached; rewrite it with | in AutoGen, or keep one side"
    )


def _pick(how: Any, x: Any, y: Any) -> Any:
    return y if x is None else x if y is None else how(x, y)


def _positive(part: Part, key: str, found: Findings, kind: type[int] | type[float] = int) -> Any:
    value = part.config.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        found.problem(part.at(key), f"{part.kind} needs a positive number here, not {quote(value)}")
        return None
    return kind(value)


def _max_message(part: Part, swarm: bool, found: Findings) -> Limits | None:
    n = _positive(part, "max_messages", found)
    if n is None:
        return None
    if part.config.get("include_agent_event"):
        found.note(
            "MaxMessageTermination counted agent events too (include_agent_event); parley counts turns"
        )
    # AutoGen counts the task as the first message; parley counts the agents' messages.
    return Limits(max_turns=max(1, n - 1))


def _text_mention(part: Part, swarm: bool, found: Findings) -> Limits | None:
    text = part.config.get("text")
    if not isinstance(text, str) or not text.strip():
        found.problem(part.at("text"), "TextMentionTermination needs a text")
        return None
    sources = part.config.get("sources")
    who = frozenset(str(s) for s in sources) if isinstance(sources, list) and sources else None
    return Limits(stop_text=text.strip(), stop_from=who)


def _token_usage(part: Part, swarm: bool, found: Findings) -> Limits | None:
    for key in ("max_prompt_token", "max_completion_token"):
        if part.config.get(key) is not None:
            found.problem(
                part.at(key),
                f"parley limits prompt and completion tokens together (max_tokens), not {key} alone; use "
                "max_total_token",
            )
            return None
    n = _positive(part, "max_total_token", found)
    return None if n is None else Limits(max_tokens=n)


def _timeout(part: Part, swarm: bool, found: Findings) -> Limits | None:
    n = _positive(part, "timeout_seconds", found, float)
    return None if n is None else Limits(timeout_s=n)


def _handoff(part: Part, swarm: bool, found: Findings) -> Limits | None:
    target = part.config.get("target")
    if target == "user" and swarm:
        return Limits(handoff_user=True)
    found.problem(
        part.path,
        f"HandoffTermination to {quote(target)} has no parley equivalent: a parley swarm ends when a role hands "
        "off to `user`, and only a swarm hands off; give the roles `handoffs: [user]` instead",
    )
    return None


def _never(part: Part, swarm: bool, found: Findings) -> Limits | None:
    why = {
        "StopMessageTermination": "an AssistantAgent never sends a StopMessage",
        "ExternalTermination": "parley's Stop button, /stop and Ctrl-C end a run",
    }[part.kind]
    found.note(f"{part.kind} left out: {why}")
    return Limits()


_LEAVES = {
    "MaxMessageTermination": _max_message,
    "TextMentionTermination": _text_mention,
    "TokenUsageTermination": _token_usage,
    "TimeoutTermination": _timeout,
    "HandoffTermination": _handoff,
    "StopMessageTermination": _never,
    "ExternalTermination": _never,
}


def _condition(name: str, config: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "provider": f"{AGENTCHAT}.conditions.{name}",
        "component_type": "termination",
        "version": 1,
        "component_version": 1,
        "description": description,
        "label": name,
        "config": config,
    }


def termination_component(
    *,
    max_turns: int,
    stop_text: str | None,
    max_tokens: int | None,
    timeout_s: float | None,
    handoff_user: bool,
) -> dict[str, Any]:
    """AutoGen's condition for parley's limits: each limit's condition, joined with `|`."""
    parts = [
        # AutoGen counts the task as a message: one more than parley's agent turns.
        _condition(
            "MaxMessageTermination",
            {"max_messages": max_turns + 1, "include_agent_event": False},
            "Terminate the conversation after a maximum number of messages have been exchanged.",
        )
    ]
    if stop_text:
        parts.append(
            _condition(
                "TextMentionTermination",
                {"text": stop_text},
                "Terminate the conversation if a specific text is mentioned.",
            )
        )
    if max_tokens:
        parts.append(
            _condition(
                "TokenUsageTermination",
                {"max_total_token": max_tokens, "max_prompt_token": None, "max_completion_token": None},
                "Terminate the conversation if a token usage limit is reached.",
            )
        )
    if timeout_s:
        parts.append(
            _condition(
                "TimeoutTermination",
                {"timeout_seconds": timeout_s},
                "Terminate the conversation after a specified duration has passed.",
            )
        )
    if handoff_user:
        parts.append(
            _condition(
                "HandoffTermination",
                {"target": "user"},
                "Terminate the conversation on a handoff to the user.",
            )
        )
    if len(parts) == 1:
        return parts[0]
    return {
        "provider": f"{AGENTCHAT}.base.OrTerminationCondition",
        "component_type": "termination",
        "version": 1,
        "component_version": 1,
        "label": "OrTerminationCondition",
        "config": {"conditions": parts},
    }
