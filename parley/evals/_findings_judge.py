"""The failure modes no rule can see, asked of a judge model: one call per scenario run, a strict JSON answer,
read defensively (an answer that cannot be read is a note in the report, never a crash)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from .._text import one_line
from ..events import Event, HumanMessageEvent, MessageEvent, SubtaskEvent, ToolCallEvent
from ._findings import JUDGED, MODES, Finding

__all__ = ["FailureJudge", "ModelFailureJudge", "ask_judge", "parse_answer", "prompt"]

FailureJudge = Callable[[str, str], Awaitable[str]]
"""(system prompt, user prompt) -> the judge model's raw answer."""

WHO = "failure_judge"
"""The judge's name on the meter, and its role in a scripted judge's script."""
MAX_FINDINGS = 20
TRANSCRIPT_CHARS = 12000
EVIDENCE_CHARS = 400

SYSTEM = (
    "You review a multi-agent conversation for failure modes, as named by the MAST taxonomy. Report only what the "
    "conversation shows, quoting it. Answer with JSON only."
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "mode": {"type": "string", "enum": list(JUDGED)},
                    "turn": {"type": "integer"},
                    "role": {"type": "string"},
                    "evidence": {"type": "string"},
                },
                "required": ["mode", "turn", "role", "evidence"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["findings"],
    "additionalProperties": False,
}


def _line(e: Event) -> str | None:
    if isinstance(e, MessageEvent) and e.kind != "handoff":
        return f"[{e.turn}] {e.source}: {e.content}"
    if isinstance(e, ToolCallEvent):
        return f"[{e.turn}] {e.source} calls {e.name} {e.content}"
    if isinstance(e, SubtaskEvent) and e.status == "started":
        return f"[{e.turn}] {e.source} delegates to {e.worker}: {e.task}"
    if isinstance(e, HumanMessageEvent) and e.mode != "task":
        return f"[after {e.turn}] human: {e.content}"
    return None


def prompt(events: Sequence[Event], task: str, roles: Sequence[str]) -> str:
    """The judge's question: the task, the roles, the conversation (its end kept when long), the modes to look for."""
    lines = [line for e in events if (line := _line(e)) is not None]
    transcript = "\n".join(lines)[-TRANSCRIPT_CHARS:]
    modes = "\n".join(f"- {m} ({MODES[m]})" for m in JUDGED)
    return (
        f"Task: {task}\nRoles: {', '.join(roles) or 'unknown'}\n\nConversation ([turn] speaker: text):\n"
        f"{transcript}\n\nWhich of these failure modes does the conversation show?\n{modes}\n\n"
        'Answer {"findings": [{"mode": ..., "turn": N, "role": ..., "evidence": "a quote"}]}, one item per '
        'failure seen, with "mode" exactly as listed; {"findings": []} when there are none.'
    )


def _json_in(text: str) -> Any:
    """The JSON value of an answer: the whole text, else a fenced block, else the outermost braces."""
    candidates = [text.strip()]
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        candidates.append(fenced.group(1).strip())
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            continue
    raise ValueError("not JSON")


def _mode(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    wanted = " ".join(value.lower().replace("_", " ").split())
    return next((m for m in JUDGED if m == wanted or m.replace("-", " ") == wanted.replace("-", " ")), None)


def _item(value: Any, max_turn: int) -> Finding | str:
    """One reported finding, or what is wrong with it."""
    if not isinstance(value, dict):
        return "an item that is not an object"
    raw = cast(dict[str, Any], value)
    mode = _mode(raw.get("mode"))
    if mode is None:
        return f"an unknown mode {str(raw.get('mode'))[:60]!r}"
    turn = raw.get("turn")
    turn = turn if isinstance(turn, int) and not isinstance(turn, bool) and 0 <= turn <= max_turn else 0
    role = raw.get("role")
    evidence = raw.get("evidence")
    return Finding(
        mode,
        turn,
        one_line(role, 60) if isinstance(role, str) else "",
        one_line(
            evidence if isinstance(evidence, str) else json.dumps(evidence, default=str), EVIDENCE_CHARS
        ),
        by="judge",
    )


def parse_answer(text: str, max_turn: int) -> tuple[list[Finding], str | None]:
    """The judge's findings, and a note on what could not be read (None when all of it could). A turn out of the
    run's range reads as 0 (unknown)."""
    try:
        data = _json_in(text)
    except ValueError:
        return [], f"the judge's answer was not JSON: {' '.join(text.split())[:120]!r}"
    items = cast(dict[str, Any], data).get("findings") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return [], 'the judge\'s answer had no "findings" list'
    items = cast(list[Any], items)
    found: list[Finding] = []
    problems: list[str] = []
    for raw in items[:MAX_FINDINGS]:
        item = _item(raw, max_turn)
        if isinstance(item, Finding):
            found.append(item)
        else:
            problems.append(item)
    if len(items) > MAX_FINDINGS:
        problems.append(f"{len(items) - MAX_FINDINGS} findings over the limit of {MAX_FINDINGS}")
    note = "the judge's answer had " + "; ".join(problems) + " (left out)" if problems else None
    return found, note


async def ask_judge(
    judge: FailureJudge, events: Sequence[Event], task: str, roles: Sequence[str], max_turn: int
) -> tuple[list[Finding], str | None]:
    """One judge call for a run: its findings and a note when the call failed or its answer was not readable."""
    try:
        text = await judge(SYSTEM, prompt(events, task, roles))
    except Exception as exc:  # a judge that fails is said in the report; the run's record stands
        return [], f"the judge model failed: {type(exc).__name__}: {str(exc)[:200]}"
    return parse_answer(text, max_turn)


class ModelFailureJudge:
    """A judge on a model of a pool (the `--judge-model` one, on the judge's own meter), JSON-schema bound where the
    model takes a schema."""

    def __init__(self, pool: Any, model: str) -> None:
        self.pool = pool
        self.model = model

    async def __call__(self, system: str, user: str) -> str:
        from ..engine.autogen.ask import answer_json

        return await answer_json(
            self.pool, self.model, WHO, system=system, user=user, schema=SCHEMA, name="failure_modes"
        )
