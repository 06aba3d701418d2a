"""Rebuilding a stored conversation, e.g. after a server restart or on another replica."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .events import MessageEvent
from .inbox import HumanMessage
from .state import ConversationState
from .state import restore as restore_state

if TYPE_CHECKING:
    from .conversation import Conversation
    from .store import Store

__all__ = ["apply", "load", "restore"]


async def load(store: Store, thread_id: str, role_models: dict[str, str] | None = None) -> ConversationState:
    """A stored conversation's state: its events, and the latest checkpoint of a turn that finished."""
    events = await store.load_events(thread_id)
    turn = max((e.turn for e in events if isinstance(e, MessageEvent)), default=0)
    # A checkpoint is written with (or just before) its message: if the process died in between, the checkpoint is
    # ahead of what anyone saw, so the one before it is used and that turn is done again.
    checkpoint = await store.latest_checkpoint(thread_id, up_to_turn=turn)
    return restore_state(
        events, checkpoint.state if checkpoint is not None else None, role_models=role_models
    )


def apply(conv: Conversation, state: ConversationState) -> None:
    """A freshly built conversation takes a stored one's state. (Until `Conversation` applies it itself.)"""
    conv.history = list(state.history)
    conv.turn = state.turn
    conv.checkpoints.resume(state.said, state.checkpoint)
    conv.meter.call_ids.update(state.call_ids)
    conv.notes_board.extend(state.notes)
    for script in conv.pool.scripts:
        for who, n in state.script_replies.get(f"scripted:{script.path}", {}).items():
            script.cursors[who] = script.cursors.get(who, 0) + n
    conv.inbox.put_first([HumanMessage("say", text) for text in state.pending])


async def restore(cls: type[Conversation], store: Store, thread_id: str, **kwargs: Any) -> Conversation:
    row = await store.get_thread(thread_id)
    if row is None:
        raise ConfigError(f"no stored conversation {thread_id!r}")
    kwargs.setdefault("model", row.model or None)
    conv = cls(row.team, **kwargs)
    apply(conv, await load(store, thread_id, conv.role_models))
    conv.attach(store, thread_id)
    return conv
