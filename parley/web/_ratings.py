"""Thumbs up and down on agents' messages: the steps Chainlit's page puts its thumbs on, live and reopened.

Chainlit 2.x's page offers thumbs only under the last agent message inside a step of type "run" named after one of
its own handlers (`on_message`), and shows such a step as its messages alone; a run of any other name shows as a
collapsible "Used …" step around them. The thumbs rate the run step, not the message. So each agent message goes
inside a run step of its own: its rating step.

A rating step's id is needed when its message starts streaming, before the message's event (and its place in the
history) exists. A speaker writes one message at a time, so the id is the speaker's count of messages so far in the
thread: the live page and the reopened thread give the same message the same id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ..events import Event, MessageEvent, TurnAbandonedEvent, ValidationEvent

RUN_NAME = "on_message"
"""The name Chainlit's page gives its thumbs to (with type "run"), and shows as its messages only."""


def closes_message(ev: Event) -> bool:
    """`ev` ends one message of its speaker on the page: the message itself, a turn cut short, a failed check."""
    return isinstance(ev, MessageEvent | TurnAbandonedEvent) or (
        isinstance(ev, ValidationEvent) and not ev.passed
    )


def said_by(events: Iterable[Event], source: str) -> int:
    """How many messages `source` ended in `events`."""
    return sum(1 for e in events if e.source == source and closes_message(e))


def rating_id(thread_id: str, source: str, n: int) -> str:
    """The rating step of `source`'s message number `n` (from 0) in the thread."""
    return f"{thread_id}-said-{source}-{n}"


def rating_step(thread_id: str, step_id: str, created: str) -> dict[str, Any]:
    """A rating step as a stored thread gives it (its message is its child); ended, so the page offers thumbs."""
    return {
        "id": step_id,
        "threadId": thread_id,
        "parentId": None,
        "type": "run",
        "name": RUN_NAME,
        "input": "",
        "output": "",
        "createdAt": created,
        "start": created,
        "end": created,
    }


def rated_steps(thread_id: str, events: Sequence[Event], steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`steps` (the reading of `events`, each message under the id `{thread_id}-{index}`) with every agent message
    inside its rating step, which comes right before it."""
    ratings: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for i, ev in enumerate(events):
        if closes_message(ev):
            ratings[f"{thread_id}-{i}"] = rating_id(thread_id, ev.source, counts[ev.source])
            counts[ev.source] += 1
    out: list[dict[str, Any]] = []
    for step in steps:
        run = ratings.get(step["id"])
        if run is not None and step.get("type") == "assistant_message" and not step.get("parentId"):
            out.append(rating_step(thread_id, run, step["createdAt"]))
            step = step | {"parentId": run}
        out.append(step)
    return out


def rated_message(steps: Iterable[dict[str, Any]], step_id: str) -> dict[str, Any] | None:
    """The agent message that rating step `step_id` holds, or None if `step_id` is no rating step of `steps`."""
    runs = set()
    for step in steps:
        if step.get("type") == "run" and step.get("name") == RUN_NAME:
            runs.add(step["id"])
        elif step.get("parentId") == step_id and step_id in runs and step.get("type") == "assistant_message":
            return step
    return None


def with_feedback(steps: list[dict[str, Any]], given: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """`steps`, each rating step with the feedback `given` it (by step id): the thumbs show as they were left."""
    return [s | {"feedback": given[s["id"]]} if s["id"] in given else s for s in steps]
