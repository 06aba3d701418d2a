"""A page that takes over its new chat session on a second socket, as Chainlit's page does on a team switch, still
gets the chat's start there (parley/web/_chainlit_restore.py), through Chainlit's own connect and restore code."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any

import chainlit.socket as chainlit_socket
import pytest
from chainlit.config import config as chainlit_config
from chainlit.server import sio
from chainlit.session import WebsocketSession
from chainlit.user import User
from chainlit.user_session import user_sessions

from parley.web import _chainlit_restore as restore

PICKER = [{"type": "select", "id": "model", "label": "Model", "initial": "own", "items": []}]
NOTE = {"id": "note-1", "type": "assistant_message", "output": "using Script · support-brief.yaml"}


class Socket:
    """What Chainlit sends one socket of the page."""

    def __init__(self) -> None:
        self.sid = str(uuid.uuid4())
        self.sent: list[tuple[str, Any]] = []

    async def emit(self, event: str, data: Any) -> None:
        self.sent.append((event, data))

    async def call(self, *_: Any) -> None:
        return None

    def events(self) -> list[str]:
        return [e for e, _ in self.sent]


def first_socket() -> tuple[WebsocketSession, Socket]:
    """A new chat session on socket B, its chat started there (as on_chat_start does: picker, a note, commands)."""
    b = Socket()
    session = WebsocketSession(
        id=str(uuid.uuid4()),
        socket_id=b.sid,
        emit=b.emit,  # pyright: ignore[reportArgumentType] - Chainlit awaits what emit returns
        emit_call=b.call,
        user_env={},
        client_type="webapp",
    )
    restore.listen(b.sid)
    session.chat_started = True
    return session, b


async def start(session: WebsocketSession) -> None:
    emit: Any = session.emit
    await emit("chat_settings", PICKER)
    session.chat_settings = {"model": "own"}
    await emit("new_message", NOTE)
    await emit("set_commands", [])


async def take_over(session: WebsocketSession) -> Socket:
    """The page's second socket, with the same session id: Chainlit restores the session on it."""
    c = Socket()
    assert chainlit_socket.restore_existing_session(c.sid, session.id, c.emit, c.call, {})
    restore.listen(c.sid)
    restore.install()
    await sio.handlers["/"]["connection_successful"](c.sid)
    return c


async def test_a_session_taken_over_as_its_chat_starts_is_sent_the_start_again() -> None:
    session, b = first_socket()
    await start(session)  # all of it went to B, which the page has closed already
    c = await take_over(session)
    assert c.events() == [
        "task_end",
        "clear_ask",
        "clear_call_fn",
        "new_message",
        "chat_settings",
        "set_commands",
    ]
    assert dict(c.sent)["chat_settings"] == PICKER and dict(c.sent)["new_message"] == NOTE
    assert b.events() == ["chat_settings", "new_message", "set_commands"]  # nothing more to the closed one


async def test_what_reached_the_new_socket_is_not_sent_again_and_the_picker_shows_the_choice() -> None:
    session, _ = first_socket()
    emit: Any = session.emit
    await emit("chat_settings", PICKER)  # on B; the rest of the start comes once C has the session
    session.chat_settings = {"model": "scripted:desk-brief.yaml"}  # chosen in the picker since
    c = await take_over(session)
    (picker,) = [d for e, d in c.sent if e == "chat_settings"]
    assert picker[0]["initial"] == "scripted:desk-brief.yaml"
    assert "set_commands" not in c.events()  # not sent yet at all: the start sends it, below
    emit = session.emit
    await emit("set_commands", [])  # on C, where the page reads it
    before = len(c.sent)
    await restore_on(session, c)
    assert c.events()[before:] == ["task_end", "clear_ask", "clear_call_fn"]  # it has all of the start now


async def restore_on(session: WebsocketSession, socket: Socket) -> None:
    """The page's connection_successful again on the same socket (as after a reconnect of it)."""
    session.restored = True
    await sio.handlers["/"]["connection_successful"](socket.sid)


async def test_a_new_session_or_one_with_a_conversation_is_sent_nothing_again() -> None:
    session, _ = first_socket()
    await start(session)
    session.has_first_interaction = True  # a message was sent: Chainlit's own resume takes it from here
    c = await take_over(session)
    assert c.events() == ["task_end", "clear_ask", "clear_call_fn"]


async def test_a_chat_start_leaves_a_session_reopening_a_thread_to_its_resume() -> None:
    """A page that takes its session over while the first socket's handler reads the thread to reopen gets
    `on_chat_start` too (restored, not interacted with yet): it waits for the reading, and leaves the session to the
    reopened thread, or starts a new chat if there was none to reopen."""
    read = asyncio.Event()

    async def thread_of(session: WebsocketSession) -> dict[str, Any] | None:
        await read.wait()
        return {"id": session.thread_id_to_resume} if session.thread_id_to_resume else None

    resume_thread = restore.tracking(thread_of)
    reopening, _ = first_socket()
    reopening.thread_id_to_resume = "t-1"
    reading = asyncio.ensure_future(resume_thread(reopening))
    await asyncio.sleep(0)  # the reading has begun
    asked = asyncio.ensure_future(restore.resuming(reopening))  # on_chat_start, meanwhile
    await asyncio.sleep(0)
    assert not asked.done()  # it waits for the reading
    read.set()
    assert await reading == {"id": "t-1"} and await asked is True

    missing, _ = first_socket()  # a thread that cannot be reopened: the chat starts after all
    assert await resume_thread(missing) is None and await restore.resuming(missing) is False
    fresh, _ = first_socket()  # a session reopening nothing
    assert await restore.resuming(fresh) is False
    assert restore.tracking(resume_thread) is resume_thread  # wrapped once, however often the app is imported


async def test_a_thread_whose_first_socket_closed_before_its_start_is_reopened_on_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reloaded thread page whose first socket closed before the server handled its start: the session restored
    on the next socket is asked for its thread (here none can be read: no data layer), not given a new chat."""

    async def on_chat_resume(
        thread: Any,
    ) -> None:  # the app's (Chainlit reopens threads only for an app with one)
        return None

    monkeypatch.setattr(chainlit_config.code, "on_chat_resume", on_chat_resume)
    page, first = first_socket()
    page.chat_started = False  # the first socket's connection_successful never ran
    page.thread_id_to_resume = "t-1"
    c = await take_over(page)
    assert "resume_thread_error" in c.events()  # Chainlit tried to reopen t-1 on the new socket
    assert first.events() == []

    later, _ = first_socket()  # a new chat started on the first socket; the page asks for t-2 on its next one
    await start(later)
    restore.follow_page({"sessionId": later.id, "threadId": "t-2"})
    assert later.thread_id_to_resume == "t-2"
    assert "resume_thread_error" in (await take_over(later)).events()

    switched, _ = first_socket()  # a team switch: a new chat on both sockets, nothing to reopen
    await start(switched)
    restore.follow_page({"sessionId": switched.id, "threadId": ""})
    assert "resume_thread_error" not in (await take_over(switched)).events()

    sent, _ = first_socket()  # a session with a conversation going keeps its thread
    sent.has_first_interaction = True
    restore.follow_page({"sessionId": sent.id, "threadId": "t-3"})
    assert sent.thread_id_to_resume is None


def test_chainlit_still_restores_sessions_as_parley_assumes() -> None:
    from parley.web import _chainlit_fixes

    _chainlit_fixes.install()  # which installs restore's steps, and wraps Chainlit's resume_thread
    assert restore.check() == []


async def test_a_thread_reopened_again_keeps_the_pages_chat_while_chainlit_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reloaded page reconnects once its thread is open, and the thread is reopened on the new socket: Chainlit's
    reading replaces the session's user data with the thread's metadata. The page's chat stays there (a Stop clicked
    meanwhile stopped nothing); a session reopening its thread the first time gets the metadata as Chainlit gives it."""
    read = asyncio.Event()

    class Layer:
        async def get_thread(self, thread_id: str) -> dict[str, Any]:
            await read.wait()
            return {"id": thread_id, "userIdentifier": "ann", "metadata": {"chat_profile": "support"}}

    monkeypatch.setattr(chainlit_socket, "get_data_layer", lambda: Layer())
    resume_thread = restore.tracking(inspect.unwrap(chainlit_socket.resume_thread))
    session, _ = first_socket()
    session.user = User(identifier="ann")
    session.thread_id_to_resume = "t-1"
    session.has_first_interaction = True  # reopened once already on an earlier socket
    chat = object()
    user_sessions[session.id] = {"parley": chat}
    reading = asyncio.ensure_future(resume_thread(session))
    await asyncio.sleep(0)
    assert user_sessions[session.id]["parley"] is chat  # while the thread is read
    read.set()
    assert (await reading)["id"] == "t-1"
    assert user_sessions[session.id]["parley"] is chat
    assert (
        user_sessions[session.id]["chat_profile"] == "support"
    )  # and the thread's metadata, as Chainlit gives it

    first, _ = first_socket()  # a new page's session: Chainlit's reading decides what it holds
    first.user = User(identifier="ann")
    first.thread_id_to_resume = "t-2"
    user_sessions[first.id] = {"parley": chat}
    assert (await resume_thread(first))["id"] == "t-2"
    assert user_sessions[first.id] == {"chat_profile": "support"}
