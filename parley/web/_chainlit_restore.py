"""A page that takes over a chat session as it starts is still told what the start told the page (Chainlit 2.x).

On a team switch (and at times on a first load) Chainlit's page opens a socket, whose session is new, so the server
runs `on_chat_start` for it, and at once replaces that socket with another for the same session. Chainlit restores
the session on the second socket and, its chat having started, runs nothing for it (`connection_successful`):
what `on_chat_start` had sent by then (the model picker's chat settings, the composer's commands, its notes) went
to the first socket, closed, and the page never shows it. Chainlit has no hook for a restored connection, so
`listen()` (called by `_chainlit_fixes`' connect handler) records what each session's page is told until its first
interaction, and `install()` puts a step after Chainlit's `connection_successful`: a session restored before its
first interaction, whose chat had started, is sent again what went to another socket.

A page reopening a thread can drop its first socket before the server handled that socket's start: the session
restored on the next one is then given the thread, not a new chat (`_never_reopened`).

The same take-over can come while the first socket's handler reopens a thread (it reads the thread first): the
restored session, not interacted with yet, then also gets `on_chat_start`, a new idle chat that could replace the
reopened one in the session as the page goes on showing the thread (a Stop clicked there stopped nothing). So
`tracking()` (installed by `_chainlit_fixes`) notes each session whose thread is being reopened, and `resuming()`
tells `on_chat_start` to leave such a session to its resume.

A page that reconnects once its thread is open (a reload opens several sockets in a row) has its thread reopened
again on the new socket, and Chainlit's reading replaces the session's user data with the thread's metadata: the
page's chat would be missing until `on_chat_resume` set it again, and a Stop clicked meanwhile did nothing. So
`tracking()` keeps the session's own entries across that reading (`_keep`).

`check()` says whether Chainlit still behaves as this assumes (see `_chainlit_fixes.check`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from weakref import WeakKeyDictionary

import chainlit
import chainlit.socket as _socket
from chainlit import server as _server
from chainlit.chat_settings import ChatSettings
from chainlit.emitter import ChainlitEmitter
from chainlit.session import WebsocketSession
from chainlit.user_session import user_sessions

log = logging.getLogger("parley.web")
_REPLAYS = "_parley_replays"
LATEST = ("resume_thread_error", "set_modes", "chat_settings", "set_commands")
"""Events whose latest sending is what the page needs, in the order they are sent again (commands last: a page's
commands are how tests/chat_started.py knows its chat started)."""
MESSAGES = ("new_message", "update_message")
Emit = Callable[[str, Any], Awaitable[Any]]


@dataclass(kw_only=True)
class _Told:
    """What a session's page was told before its first interaction, each with the socket it went to."""

    latest: dict[str, tuple[str, Any]] = field(default_factory=dict)
    messages: dict[str, tuple[str, Any]] = field(default_factory=dict)
    """Message id -> (socket id, the message as last sent)."""


_told: WeakKeyDictionary[WebsocketSession, _Told] = WeakKeyDictionary()


def listen(sid: str) -> None:
    """Record what the session connected on socket `sid` is told through it, until its first interaction."""
    session = WebsocketSession.get(sid)
    if session is None:
        return
    if session.has_first_interaction:
        _told.pop(session, None)
        return
    told = _told.setdefault(session, _Told())
    emit = _emit_of(session)

    @functools.wraps(emit)
    def recorded(event: str, data: Any) -> Awaitable[Any]:
        if session.has_first_interaction:
            _told.pop(session, None)
        elif event in LATEST:
            told.latest[event] = (sid, data)
        elif event in MESSAGES and isinstance(data, dict) and data.get("id"):
            told.messages[str(data["id"])] = (sid, data)
        elif event == "delete_message" and isinstance(data, dict):
            told.messages.pop(str(data.get("id")), None)
        return emit(event, data)

    session.emit = cast(Any, recorded)


def _emit_of(session: WebsocketSession) -> Emit:
    """The session's emit as it is (Chainlit types it as returning None; it returns the send to await)."""
    return cast(Emit, session.emit)


async def _tell_again(session: WebsocketSession, sid: str) -> None:
    """Send `session`'s page, now on socket `sid`, what it was told on another socket."""
    told = _told.get(session)
    if told is None:
        return
    resent = 0
    for went_to, step in list(told.messages.values()):
        if went_to != sid:
            await _emit_of(session)("new_message", step)
            resent += 1
    for event in LATEST:
        went_to, data = told.latest.get(event, (sid, None))
        if went_to != sid:
            await _emit_of(session)(event, _as_chosen(session, data) if event == "chat_settings" else data)
            resent += 1
    if resent:
        log.debug("sent a restored session's start again to its new socket (%d events)", resent)


def _as_chosen(session: WebsocketSession, inputs: Any) -> Any:
    """Chat settings widgets, each showing the value the page chose since (Chainlit keeps it in the session)."""
    chosen = session.chat_settings or {}
    if not isinstance(inputs, list):
        return inputs
    return [
        {**w, "initial": chosen[w["id"]]} if isinstance(w, dict) and w.get("id") in chosen else w
        for w in inputs
    ]


_resumes: WeakKeyDictionary[WebsocketSession, asyncio.Future[bool]] = WeakKeyDictionary()
ResumeThread = Callable[[WebsocketSession], Awaitable[Any]]


def tracking(read_thread: ResumeThread) -> ResumeThread:
    """Chainlit's `resume_thread(session)` (it reads the thread to reopen), noting while and whether it reopens."""
    if getattr(read_thread, _REPLAYS, False):
        return read_thread

    @functools.wraps(read_thread)
    async def resume_thread(session: WebsocketSession) -> Any:
        outcome = _resumes.get(session)
        if outcome is None or outcome.done():  # else noted as the handler began (see install)
            outcome = _resumes[session] = asyncio.get_running_loop().create_future()
        # A session reopened again (its page reconnected) keeps what the app holds for its chat meanwhile.
        kept = dict(user_sessions.get(session.id) or {}) if session.has_first_interaction else {}
        thread = None
        try:
            thread = await read_thread(session)
            if thread is not None and kept:
                _keep(session, kept)
            return thread
        finally:
            outcome.set_result(thread is not None)

    setattr(resume_thread, _REPLAYS, True)
    return resume_thread


def _keep(session: WebsocketSession, kept: dict[str, Any]) -> None:
    """Chainlit's reading replaced the session's user data with the thread's stored metadata: the chat going on
    (the app's ChatSession under "parley") would be missing until `on_chat_resume` sets it again, and a Stop
    clicked or a message sent in between found no chat (the click did nothing). Keep what the metadata lacks."""
    now = user_sessions.setdefault(session.id, {})
    for key, value in kept.items():
        now.setdefault(key, value)


async def resuming(session: WebsocketSession) -> bool:
    """Whether `session` reopens a thread (waiting for the reading in progress, if any): its chat is that thread's."""
    outcome = _resumes.get(session)
    return outcome is not None and await asyncio.shield(outcome)


def _reopens(session: WebsocketSession) -> bool:
    """A new session whose page asks for a thread: Chainlit's handler is about to reopen it."""
    return bool(session.thread_id_to_resume) and not session.restored and not session.has_first_interaction


def _never_reopened(session: WebsocketSession) -> bool:
    """A page asking for a thread dropped its socket before that socket's start was handled, or asked for it only
    on a later socket (`follow_page`), as seen on reloads of a busy page: the next socket restores the session,
    Chainlit sees it restored and starts nothing or a new chat, and the page waits on its thread loader for good.
    Such a session has a thread to show, has not begun reopening it, and nothing was sent in it yet."""
    return (
        session.restored
        and bool(session.thread_id_to_resume)
        and not session.has_first_interaction
        and session not in _resumes
    )


def follow_page(auth: dict[str, Any]) -> None:
    """A socket connects for a session not interacted with yet (Chainlit will restore it on this socket): the
    thread this socket asks for (already checked to be the user's) is the one its page shows."""
    session = WebsocketSession.get_by_id(auth.get("sessionId", ""))
    wanted = auth.get("threadId") or None
    if session is not None and wanted and not session.has_first_interaction:
        session.thread_id_to_resume = wanted


def install() -> None:
    """Put the step after Chainlit's `connection_successful` handler (once: an app imported again skips it)."""
    handlers = _server.sio.handlers.get("/", {})
    original = handlers.get("connection_successful")
    if original is None or getattr(original, _REPLAYS, False):
        return

    @functools.wraps(original)
    async def connection_successful(sid: str, *args: Any) -> Any:
        session = WebsocketSession.get(sid)
        if session is not None and _never_reopened(session):
            # Not restored, for Chainlit's handler: it reopens the thread, as the first socket's would have.
            session.restored = False
        # Chainlit's own test for a session it starts nothing for: restored, before its first interaction.
        taken_over = (
            session is not None
            and session.restored
            and session.chat_started
            and not session.has_first_interaction
        )
        # A page reopening a thread: noted now, before the handler's first await, so that a take-over that comes
        # before the reading begins waits for it too (see `resuming`).
        reopening = None
        if session is not None and _reopens(session):
            reopening = _resumes[session] = asyncio.get_running_loop().create_future()
        try:
            done = await original(sid, *args)
        finally:
            if reopening is not None and not reopening.done():  # it never read the thread
                reopening.set_result(False)
        if taken_over and session is not None:
            await _tell_again(session, sid)
        return done

    setattr(connection_successful, _REPLAYS, True)
    _server.sio.on("connection_successful", connection_successful)


def check() -> list[str]:
    """What no longer holds of how Chainlit restores a session and how its page takes what it is told."""
    broken = []
    if not getattr(_server.sio.handlers.get("/", {}).get("connection_successful"), _REPLAYS, False):
        broken.append(
            "parley's step after connection_successful is not installed: a team switch may lose its start"
        )
    if not getattr(_socket.resume_thread, _REPLAYS, False):
        broken.append("parley does not see threads being reopened: a page's take-over may start an idle chat")
    successful = inspect.getsource(_socket.connection_successful)
    for needle in (
        "await resume_thread(context.session)",
        "context.session.restored and not context.session.has_first_interaction",
        "not context.session.chat_started",
    ):
        if needle not in successful:
            broken.append(
                f"Chainlit's connection_successful no longer tests {needle!r}: check what a restored session is "
                "sent on its new socket"
            )
    if "user_sessions[session.id] = metadata.copy()" not in inspect.getsource(
        inspect.unwrap(_socket.resume_thread)
    ):
        broken.append("Chainlit's resume_thread no longer replaces the session's user data: check `_keep`")
    if "session.emit = emit_fn" not in inspect.getsource(_socket.restore_existing_session):
        broken.append("Chainlit no longer gives a restored session its new socket's emit")
    if '_get_session_property("emit")' not in inspect.getsource(ChainlitEmitter):
        broken.append("Chainlit's emitter no longer sends through its session's emit")
    if 'emit("chat_settings", self._inputs_as_dicts())' not in inspect.getsource(ChatSettings.send):
        broken.append("Chainlit no longer sends chat settings as their widgets' list")
    page = "".join(p.read_text("utf-8", "replace") for p in _page_scripts())
    for needle in ('on("chat_settings"', 'on("set_commands"', 'on("new_message"'):
        if needle not in page:
            broken.append(f"Chainlit's page no longer handles {needle[4:-1]} as parley sends it again")
    return broken


def _page_scripts() -> list[Path]:
    return sorted((Path(chainlit.__file__).parent / "frontend" / "dist" / "assets").glob("index-*.js"))
