"""Reading a stored conversation's state, e.g. after a server restart or on another replica."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .events import MessageEvent
from .state import ConversationState
from .state import restore as restore_state

if TYPE_CHECKING:
    from .store import Store

__all__ = ["load"]


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
