"""The replica and cluster tests drive Chromium with the browser tests' fixtures (tests/ui/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from chat_started import STARTS, ChatStarts

if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.fixture
def person(new_page: Callable[[], Page]) -> Callable[[], Page]:
    """`person()`: a browser tab with its own cookies, i.e. someone else at another computer. The tab's chat
    starts are watched (`STARTS[id(tab)]`)."""

    def make() -> Page:
        page = new_page()
        STARTS[id(page)] = ChatStarts(page)
        return page

    return make
