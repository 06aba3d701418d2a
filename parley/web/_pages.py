"""The pages of this process open on each conversation, without a cluster: a run that one page starts shows on the
others too, live (a shared room's members, or one user's other tabs). All pages of a thread in this process share
its one Conversation (see app.py's `_resume`), so there is one run at a time, whoever starts it. In a cluster, the
cluster's relays do this for every process (parley/cluster)."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import chainlit as cl
from chainlit.context import ChainlitContextException
from chainlit.session import WebsocketSession

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["adopt", "left", "moved", "opened", "started"]

_open: weakref.WeakSet[Any] = weakref.WeakSet()
"""Every chat session whose page is open (a ChatSession: see parley/web/_chat.py)."""


def opened(chat: Any) -> WebsocketSession | None:
    """`chat` was made for the page of the handler running now: remember it, and return that page."""
    try:
        page = cl.context.session
    except ChainlitContextException:  # made outside any page (a test)
        return None
    if not isinstance(page, WebsocketSession):
        return None
    _open.add(chat)
    return page


def left(chat: Any) -> None:
    """A page of `chat` went away: runs started elsewhere are no longer shown to it, unless it has moved on to
    another page meanwhile (a reopened thread takes its run's display over)."""
    try:
        page = cl.context.session
    except ChainlitContextException:
        page = None
    if page is None or page is chat.page:
        _open.discard(chat)


def moved(chat: Any, page: WebsocketSession) -> None:
    """`chat` shows on `page` from now on (a reopened thread took it over)."""
    chat.page = page
    _open.add(chat)


def started(chat: Any, run: Run) -> None:
    """`chat`'s page started `run`: show it there, and on every other open page of the same conversation that shows
    no run now (each from the run's start, on its own page)."""
    chat.show_run(run)
    for other in list(_open):
        if other is chat or other.conversation is not chat.conversation or other.showing:
            continue
        if other.page is not None and WebsocketSession.get_by_id(other.page.id) is not None:
            other.watch(run)


def adopt(chat: Any) -> None:
    """A message from `chat`'s page while its conversation runs a run the page does not show (one this process
    started otherwise, say over the API): the page shows it from now on, and the message joins it, never starting
    a second run."""
    run = chat.conversation.current_run
    if chat.cluster is None and not chat.running and chat.conversation.running and run is not None:
        chat.show_run(run, skip=len(run.events))
