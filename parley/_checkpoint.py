"""Where a rebuilt team starts from: the last checkpoint of the team's state, and what was said after it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autogen_agentchat.messages import BaseChatMessage

__all__ = ["Checkpoints"]


class Checkpoints:
    """The conversation's checkpoint and the messages said since it, which a rebuilt team is given again."""

    def __init__(self, scheduled: Sequence[str]) -> None:
        self.scheduled = list(scheduled)
        """The roles the manager schedules, in order (a round robin's next speaker is counted in these)."""
        self.state: Mapping[str, Any] | None = None
        self.unsaved: list[BaseChatMessage] = []

    async def load_into(self, team: Any) -> None:
        """A freshly built team takes the last checkpoint's state (if any)."""
        if self.state is not None:
            await team.load_state(self.state)

    async def after_message(self, team: Any, message: BaseChatMessage) -> Mapping[str, Any] | None:
        """Called as soon as the team's stream yields a role's message, before any other await. Returns the
        checkpoint to store, or None when the team's state is not one to trust."""
        state = await team.save_state()
        return self._note(state, message)

    def _note(self, state: Mapping[str, Any], message: BaseChatMessage) -> Mapping[str, Any] | None:
        """Trust a checkpoint only if the manager's thread ends with the message just seen."""
        manager = next(
            (s for s in state.get("agent_states", {}).values() if isinstance(s, Mapping) and "message_thread" in s), None
        )
        thread = manager["message_thread"] if manager else []
        if manager is not None and thread and thread[-1].get("id") == message.id:
            if "next_speaker_index" in manager:
                # The manager picks the next speaker before we see the message; a restored team must
                # pick it again, so point round robin at the role after the one that just spoke.
                names = self.scheduled
                manager["next_speaker_index"] = (names.index(message.source) + 1) % len(names)  # type: ignore[index]
            self.state = state
            self.unsaved = []
            return state
        self.unsaved.append(message)
        return None
