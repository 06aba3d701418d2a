"""Rebuilding a stored conversation, e.g. after a server restart or on another replica."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autogen_agentchat.messages import TextMessage

from .errors import ConfigError
from .events import (
    Event,
    HumanMessageEvent,
    HumanQueuedEvent,
    MessageEvent,
    RunResult,
    RunStartedEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnAbandonedEvent,
    UsageEvent,
    event_adapter,
)
from .models import SELECTOR

if TYPE_CHECKING:
    from .conversation import Conversation
    from .store import Store


async def restore(cls: type[Conversation], store: Store, thread_id: str, **kwargs: Any) -> Conversation:
    row = await store.get_thread(thread_id)
    if row is None:
        raise ConfigError(f"no stored conversation {thread_id!r}")
    kwargs.setdefault("model", row.model or None)
    conv = cls(row.team, **kwargs)
    rows = await store.events(thread_id)
    events = []
    for r in rows:
        try:
            events.append(event_adapter.validate_python(r.payload))
        except ValueError:
            continue  # an event type from a newer version: show what we understand
    conv.history = events
    messages = [e for e in events if isinstance(e, MessageEvent)]
    conv.turn = max((m.turn for m in messages), default=0)
    # A checkpoint is written just before its message: if the process died in between, the checkpoint is
    # ahead of what anyone saw, so the team restarts from the one before and does that turn again.
    checkpoint = await store.latest_checkpoint(thread_id, up_to_turn=conv.turn)
    start = 0
    if checkpoint is not None:
        conv.checkpoints.state = checkpoint.state
        # Everything said after the message that produced the checkpoint is replayed to the restored team.
        anchor = next((i for i, e in enumerate(events) if isinstance(e, MessageEvent) and e.turn == checkpoint.turn), None)
        start = anchor + 1 if anchor is not None else len(events)
    replay = []
    for e in events[start:]:
        if isinstance(e, MessageEvent):
            replay.append(TextMessage(content=e.content, source=e.source))
        elif isinstance(e, HumanMessageEvent):
            replay.append(TextMessage(content=e.content, source="user"))
    conv.checkpoints.unsaved = replay  # type: ignore[assignment]
    lost = _lost_turns(events)
    kept = [e for i, e in enumerate(events) if i not in lost]
    _advance_scripts(conv, kept)
    _restore_notes(conv, kept)
    conv._pending = [("say", t) for t in _undelivered(events)]
    conv.attach(store, thread_id)
    return conv


def _runs(events: list[Event]) -> list[tuple[int, int]]:
    """Where each run's events start and end in the history."""
    starts = [i for i, e in enumerate(events) if isinstance(e, RunStartedEvent)]
    return list(zip(starts, [*starts[1:], len(events)], strict=True))


def _lost_turns(events: list[Event]) -> set[int]:
    """The events of turns a dead process never finished: a run without a stored result ends with the turn
    it died in, after its last message. The restored team does that turn again, so its model calls and
    notes do not count twice."""
    lost: set[int] = set()
    for start, end in _runs(events):
        if any(isinstance(e, RunResult) for e in events[start:end]):
            continue
        last = max((i for i in range(start, end) if isinstance(events[i], MessageEvent)), default=start)
        lost.update(range(last + 1, end))
    return lost


def _undelivered(events: list[Event]) -> list[str]:
    """Human messages the team has not received: those the last run ended with or, when its process died,
    those it carried over, its task and those queued, less the ones it delivered before dying."""
    waiting: list[str] = []
    for start, end in _runs(events):
        run = events[start:end]
        result = next((e for e in run if isinstance(e, RunResult)), None)
        if result is not None:
            waiting = list(result.undelivered)
            continue
        delivered = [e for e in run if isinstance(e, HumanMessageEvent)]
        task = [] if any(e.mode == "task" for e in delivered) else [run[0].content]
        waiting = [*waiting, *task, *(e.content for e in run if isinstance(e, HumanQueuedEvent))]
        for e in delivered:
            if e.mode != "task" and e.content in waiting:
                waiting.remove(e.content)
    return waiting


def _restore_notes(conv: Conversation, events: list[Event]) -> None:
    """The team's shared notes, rebuilt from the team_notes calls that succeeded."""
    # Call ids already stored stay taken: a model that repeats one after a restart gets a fresh id.
    conv.meter.call_ids.update(e.call_id for e in events if isinstance(e, ToolCallEvent))
    calls = {e.call_id: e for e in events if isinstance(e, ToolCallEvent) and e.name == "team_notes"}
    for e in events:
        call = calls.get(e.call_id) if isinstance(e, ToolResultEvent) and not e.is_error else None
        args = call.arguments if call is not None else None
        if isinstance(args, dict) and args.get("action") == "add" and str(args.get("text", "")).strip():
            conv.notes_board.append({"role": call.source, "text": str(args["text"]).strip()[:2000], "ts": call.ts})  # type: ignore[union-attr]


def _advance_scripts(conv: Conversation, events: list[Event]) -> None:
    """A scripted conversation continues where its stored model calls left off, not from the top."""
    for script in conv.pool.scripts:
        model = f"scripted:{script.path}"
        metered_cut: set[str] = set()
        for e in events:
            if isinstance(e, UsageEvent) and e.model == model:
                if e.reflection:  # a reflection on tool use takes no script reply (the replay answers it)
                    continue
                who = SELECTOR if e.source == "selector" else e.source
                if e.cancelled:
                    metered_cut.add(e.source)
            elif isinstance(e, TurnAbandonedEvent) and conv.role_models.get(e.source) == model:
                if e.source in metered_cut:  # its cut-short call is on the meter already
                    metered_cut.discard(e.source)
                    continue
                who = e.source  # a reply cut short by stop or interrupt was taken from the script too
            else:
                continue
            script.cursors[who] = script.cursors.get(who, 0) + 1
