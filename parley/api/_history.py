"""An OpenAI client sends the whole chat every time: find the stored conversation it continues, or say how a new one
starts with that history as context.

A stored conversation's transcript, as such a client saw it, is each run's task (the user's message) and its
result (the team's final answer). A conversation started from a history it did not hold has, as its first task,
the history and the new message in one text (`with_context`); it is matched by making that text again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from ..store import EventRow, Store

__all__ = ["SCAN", "Turn", "key_of", "matches", "same", "transcript", "with_context"]

Turn = tuple[str, str]
"""(role, text): `user` or `assistant`."""
SCAN = 50
"""The most recently updated conversations looked at for a match."""
CONTEXT_HEAD = "Earlier in this conversation (as the client sent it):"
CONTEXT_NOW = "Now the user says:"


def same(a: str, b: str) -> bool:
    """Equal but for whitespace (clients trim, re-wrap or add a newline at the end)."""
    return a.split() == b.split()


def with_context(system: Sequence[str], prior: Sequence[Turn], message: str) -> str:
    """The first task of a conversation the client started elsewhere: its instructions and history, then its
    message. Without either, the message alone."""
    if not system and not prior:
        return message
    lines = [CONTEXT_HEAD, ""]
    lines += [f"[instructions] {s}" for s in system]
    lines += [f"[{role}] {text}" for role, text in prior]
    return "\n".join([*lines, "", CONTEXT_NOW, message])


def transcript(rows: Sequence[EventRow]) -> list[Turn]:
    """A stored conversation as an OpenAI client sees it: each run's task, then its result."""
    out: list[Turn] = []
    for row in rows:
        if row.type == "human_message" and row.payload.get("mode") == "task":
            out.append(("user", str(row.payload.get("content", ""))))
        elif row.type == "result":
            out.append(("assistant", str(row.payload.get("content", ""))))
    return out


def matches(stored: Sequence[Turn], system: Sequence[str], prior: Sequence[Turn]) -> bool:
    """Whether the client's history (`system`, `prior`: it ends with the team's last answer) is this stored
    conversation's transcript, its first task possibly holding the history before it (see with_context)."""
    n = len(stored)
    if n < 2 or n % 2 or len(prior) < n or [r for r, _ in stored] != ["user", "assistant"] * (n // 2):
        return False
    head = len(prior) - n
    tail = prior[head + 1 :]
    if [r for r, _ in tail] != [r for r, _ in stored[1:]]:
        return False
    if not all(same(a[1], b[1]) for a, b in zip(tail, stored[1:], strict=True)):
        return False
    first_role, first = prior[head]
    return first_role == "user" and same(stored[0][1], with_context(system, prior[:head], first))


def key_of(system: Sequence[str], turns: Sequence[Turn]) -> str:
    """A digest of a history as the client sends it: the way to the conversation it led to, without a scan."""
    text = json.dumps([[" ".join(s.split()) for s in system], [[r, " ".join(t.split())] for r, t in turns]])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def find(
    store: Store, user: str, team: str, system: Sequence[str], prior: Sequence[Turn]
) -> str | None:
    """The most recently updated conversation of `user` with `team` that the history continues, or None."""
    for row in await store.list_threads(user, SCAN):
        if row.team != team:
            continue
        if matches(transcript(await store.events(row.id)), system, prior):
            return row.id
    return None
