"""What a role's model sees of the conversation: a team file's `context:` policy, whatever engine keeps the messages.

A naive group chat sends every agent the whole history, so prompt tokens grow with the square of
the conversation's length. A role's view here is bounded instead:

- the task (the run's first human message), always;
- the latest human messages, always, however old;
- a running summary of the turns that fell out of the window, when `summary` is on;
- the last `window` turns, where a tool call and its results count as one turn;
- everything of the role's own turn in progress (its tool calls and their results).

What can never be shown again is forgotten, so a role's saved state stays the size of its view. This module
plans the view over the kinds of the messages (by their indexes); the engine's model context applies it
(see parley.engine.autogen.context).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "HUMAN",
    "KEEP_HUMAN",
    "SUMMARY_CHARS",
    "SUMMARY_PROMPT",
    "SUMMARY_SOURCE",
    "TURN_CHARS",
    "Kind",
    "Plan",
    "batch_size",
    "plan",
    "summary_request",
    "take_chunks",
]

HUMAN = "user"
"""The source of the human's messages."""
KEEP_HUMAN = 3
"""Human messages older than the window that stay in view (the task aside)."""
SUMMARY_CHARS = 700
TURN_CHARS = 1200
SUMMARY_SOURCE = "summary"

SUMMARY_PROMPT = (
    "You keep the running summary of a team conversation for members who no longer see the older turns. "
    "Merge the summary so far with the new turns. Keep decisions, figures, names, open questions and who "
    "said what. Plain text, at most 80 words, no preamble."
)

Turn = list[int]
"""The indexes of one turn's messages: one message, or a tool call and its results."""


class Kind(enum.Enum):
    HUMAN = "human"
    """A message of the human's."""
    CALL = "call"
    """A model's tool calls."""
    RESULT = "result"
    """The results of tool calls."""
    OTHER = "other"


@dataclass
class Plan:
    """A role's view, by message index (see the module's docstring)."""

    task: int | None
    """The task's message, shown first; None when no human has spoken."""
    humans: list[Turn]
    """Older human turns still shown verbatim (the latest KEEP_HUMAN of them)."""
    dropped: list[Turn]
    """Older turns out of the window: summarised when a summary is kept, forgotten otherwise."""
    recent: list[Turn]
    """The last `window` turns."""
    cut: int
    """Where the role's own turn in progress starts: it is shown whole."""


def batch_size(window: int | None) -> int:
    """Turns summarised per summariser call; until then, dropped turns stay in view (nothing vanishes)."""
    return max(2, (window or 0) // 2)


def _turns(kinds: Sequence[Kind], end: int) -> list[Turn]:
    """Message indexes before `end`, grouped into turns: a tool call and its results are one turn."""
    turns: list[Turn] = []
    for i in range(end):
        if kinds[i] is not Kind.RESULT:
            turns.append([i])
        elif turns and kinds[turns[-1][0]] is Kind.CALL:
            turns[-1].append(i)
        # else: a result whose call is gone (OpenAI-style APIs reject it)
    return turns


def _in_progress(kinds: Sequence[Kind]) -> int:
    cut = len(kinds)
    while cut > 0 and kinds[cut - 1] in (Kind.CALL, Kind.RESULT):
        cut -= 1
    return cut


def plan(kinds: Sequence[Kind], window: int) -> Plan | None:
    """The view of messages of these kinds through a window of `window` turns; None when all of them fit."""
    cut = _in_progress(kinds)
    turns = _turns(kinds, cut)
    task = next((i for i in range(cut) if kinds[i] is Kind.HUMAN), None)
    if len(turns) <= window + (task is not None):
        return None
    older = [t for t in turns[:-window] if t[0] != task]
    humans = [t for t in older if kinds[t[0]] is Kind.HUMAN][-KEEP_HUMAN:]
    dropped = [t for t in older if t not in humans]
    return Plan(task=task, humans=humans, dropped=dropped, recent=turns[-window:], cut=cut)


def take_chunks(pending: list[Turn], batch: int) -> tuple[list[list[Turn]], list[Turn]]:
    """Fixed-size chunks of `pending` in conversation order, and what is left over (fewer than `batch`): roles
    that dropped the same turns ask for the same summaries."""
    whole = len(pending) - len(pending) % batch
    return [pending[i : i + batch] for i in range(0, whole, batch)], pending[whole:]


def summary_request(previous: str, turns: Sequence[tuple[str, str]]) -> str:
    """What the summariser model is asked: the summary so far merged with these (speaker, text) turns."""
    lines = "\n".join(f"[{who}] {' '.join(text.split())[:TURN_CHARS]}" for who, text in turns)
    return f"Summary so far:\n{previous or '(none)'}\n\nNew turns:\n{lines}\n\nThe new summary:"
