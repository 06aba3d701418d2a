"""Whether a page's user may still see the conversation it shows: a shared room's owner may revoke it any time."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..conversation import Conversation

__all__ = ["ACCESS_RECHECK_S", "RoomAccess"]

log = logging.getLogger("parley.web")
ACCESS_RECHECK_S = 1.0
"""How often a page showing a run looks again whether its user may still see the conversation."""


class RoomAccess:
    """One page's user, and when their access was last looked up."""

    def __init__(self, user: str, recheck_s: float = ACCESS_RECHECK_S) -> None:
        self.user = user
        self.recheck_s = recheck_s
        self._checked = time.monotonic()
        self._owner = False
        """The conversation is the user's own: nobody can take it from them (sharing revokes members only)."""

    async def ended(self, conversation: Conversation) -> bool:
        """Whether the user lost their access to `conversation`: looked up at most once every `recheck_s`, so a
        revoked view ends within that."""
        store, tid, at = conversation.store, conversation.thread_id, time.monotonic()
        if self._owner or store is None or tid is None or at - self._checked < self.recheck_s:
            return False
        self._checked = at
        try:
            access = await store.access(self.user, tid)
            self._owner = access == "owner"
            return access is None
        except Exception:  # the store is unreachable: the run says so itself; the page goes on showing it
            log.exception("could not check %s's access to %s", self.user, tid)
            return False

    async def may_write(self, conversation: Conversation) -> bool:
        """Whether the user may change what the run does (a read-only member may only watch). Looked up now."""
        store, tid = conversation.store, conversation.thread_id
        if store is None or tid is None:
            return True
        return await store.access(self.user, tid) in ("owner", "write")
