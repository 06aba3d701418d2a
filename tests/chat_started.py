"""Knowing when a browser tab's chat session has started, for the browser tests outside tests/ui.

on_chat_start and on_chat_resume set the composer's commands (none while idle), so each start sends the page one
`set_commands` socket event: the tab counts them. Listen before the page loads."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page


class ChatStarts:
    """Counts the chat sessions started on `page`; `wait()` returns once one more has started than before."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.starts = 0
        self.seen = 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload: Any) -> None:
        if isinstance(payload, str) and payload.startswith('42["set_commands"'):
            self.starts += 1

    def expect_new(self) -> None:
        """Before a reload or a navigation: the next `wait()` waits for the start that follows it."""
        self.seen = self.starts

    def wait(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.starts <= self.seen:
            assert time.monotonic() < deadline, "the chat session never started"
            self.page.wait_for_timeout(50)  # lets the page's events in
        self.seen = self.starts
        from playwright.sync_api import expect  # only browser tests import this module; they skip without it

        expect(self.page.locator("#chat-input")).to_be_enabled()
