"""Chainlit handlers. `chainlit run app.py` imports this module; everything else lives in the engine."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import chainlit as cl
from chainlit.config import config as _chainlit_config
from chainlit.server import app as _server
from chainlit.server import sio
from chainlit.session import WebsocketSession
from chainlit.types import ThreadDict

from .._proc import freeze_startup_objects
from .._text import human_text
from ..api import mount as mount_api
from ..catalog import TeamEntry, current_teams, programs
from ..cluster import Node
from ..conversation import Conversation
from ..errors import ConfigError
from ..run import Run
from ..store import Store, default_url
from . import _chainlit_fixes, _chainlit_loop, _chainlit_pause
from ._art import write_avatars
from ._assets import CompressedAssets
from ._chat import ChatSession, commands
from ._datalayer import ParleyDataLayer, thread_made
from ._format import SYSTEM
from ._guard import (
    CONNECTION,
    LOCAL_REFUSAL,
    LOCAL_USER,
    NOT_YOURS,
    ORIGINS_ENV,
    Connection,
    WebGuard,
    bind_host,
    bound_to_loopback,
    connection_of_environ,
    local_connection,
    room_refusal,
    stale_login,
)
from ._identity import LOGIN_STAMP, Login
from ._modelpicker import available_models, open_conversation, refusal, switch, widgets
from ._ratelimit import LoginLimiter, LoginRateLimit
from ._welcome import ICON, welcome_markdown

# AutoGen logs every internal message at INFO, and every agent failure with a traceback (parley reports it).
for _noisy in ("autogen_core", "autogen_core.events", "autogen_agentchat", "httpx"):
    logging.getLogger(_noisy).setLevel(os.environ.get("PARLEY_AUTOGEN_LOG", "CRITICAL"))

log = logging.getLogger("parley.web")
_LOOP = _chainlit_loop.serve_on_own_loop()
if _LOOP is not None:
    log.info("parley web chat: event loop %s, asyncio's tasks in C", _LOOP)
DEFAULT_TEAM = os.environ.get("PARLEY_DEFAULT_TEAM", "content-studio")
_live: dict[str, ChatSession] = {}
"""Thread id -> the session whose run may still be going: reopening a thread re-attaches to it."""
_store, _store_lock = None, asyncio.Lock()


async def store() -> Store:
    """The process's store, opened on first use (PARLEY_DATABASE_URL, or SQLite in the data folder)."""
    global _store
    async with _store_lock:
        if _store is None:
            _store = await Store.open(default_url())
        return _store


_node: Node | None = None
_node_lock = asyncio.Lock()
_node_tried = False


async def cluster() -> Node | None:
    """The cluster this process joins (PARLEY_REDIS_URL), on first use; None without one."""
    global _node, _node_tried
    async with _node_lock:
        if not _node_tried:
            _node = await Node.from_env(await store())
            _node_tried = True
            if _node is not None:
                _node.start_sweeping()
        return _node


MAX_MESSAGE_BYTES = 4 * 1024 * 1024


async def _no_users() -> bool:
    return await (await store()).count_users() == 0


async def local_mode(conn: Connection | None) -> bool:
    """No login page: bound to loopback, a loopback peer not relayed by a proxy, and nobody has created a user
    yet. Decided from what the server and the connection are, never from a header the client chose."""
    return local_connection(conn) and await _no_users()


async def _screen_socket(login: Login | None, env: dict[str, Any] | None, thread: str | None) -> str | None:
    """At connect and each event: the login holds as a request's does (stale_login), and the room while shared."""
    why = await stale_login(login, connection_of_environ(env), local_mode, _login_stamp)
    if why is None and login is not None and thread:
        why = await room_refusal(await store(), login.name, thread, writing=False)
    return why


async def _login_stamp(name: str) -> str | None:
    return await (await store()).login_stamp(name)


def _guard_server() -> None:
    """Put parley's checks (ids, origins, content policy: see _guard), the sign-in rate limit (its words are in
    .chainlit/translations, auth.login.errors) and the page's compressed files in front of Chainlit, once."""
    if getattr(_server.state, "parley_login_limit", None) is not None:
        return  # the module was imported again (Chainlit's watch mode): the server already has them
    _chainlit_fixes.install(screen=_screen_socket)
    _chainlit_pause.install()
    _server.state.parley_login_limit = limiter = LoginLimiter()
    _server.add_middleware(CompressedAssets, root_path=_chainlit_config.run.root_path)  # before its gzip
    _server.add_middleware(LoginRateLimit, limiter=limiter, path=f"{_chainlit_config.run.root_path}/login")
    # Added last: the outermost, it sees every request first.
    _server.add_middleware(WebGuard, local_mode=local_mode, login_stamp=_login_stamp)


_guard_server()
if getattr(_server.state, "parley_api", None) is None:  # watch mode imports this module again
    # /api/v1 (REST, Server-Sent Events, OpenAPI) and /v1 (OpenAI-compatible), ahead of Chainlit's catch-all route
    _server.state.parley_api = mount_api(_server, store, cluster)
# Engine.IO drops the connection on any message over 1,000,000 bytes, losing it without a word; a 1 MB
# message (3 bytes a character in many scripts) must arrive.
sio.eio.max_http_buffer_size = MAX_MESSAGE_BYTES


@cl.data_layer
def _data_layer() -> ParleyDataLayer:
    return ParleyDataLayer(store)


def _refuse_open_without_login() -> None:
    """`chainlit run app.py --host 0.0.0.0` with no user would serve everyone without a login: refuse to start,
    as `parley ui` does. (Checked when Chainlit imports the app, before it listens.)"""
    behind_proxy = bool(os.environ.get(ORIGINS_ENV, "").strip())  # never local mode then (see _guard)
    if bound_to_loopback() and not behind_proxy:
        return
    try:
        asyncio.get_running_loop()
        return  # imported again inside the running server (watch mode): it passed this check when it started
    except RuntimeError:
        pass

    async def count() -> int:
        db = await Store.open(default_url())
        try:
            return await db.count_users()
        finally:
            await db.close()

    if asyncio.run(count()) == 0:
        where = (
            f"behind a proxy ({ORIGINS_ENV} is set)"
            if behind_proxy
            else f"on {bind_host() or 'every interface'}"
        )
        print(
            f"parley: serving {where} needs login: create a user first with `parley users add NAME`"
            + ("" if behind_proxy else ", or serve on 127.0.0.1"),
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(2)


_refuse_open_without_login()


@cl.header_auth_callback
async def _header_auth(headers: Any) -> cl.User | None:
    if await local_mode(CONNECTION.get()):
        return cl.User(identifier=LOCAL_USER, display_name="You", metadata={"provider": "local"})
    return None


@cl.password_auth_callback
async def _password_auth(username: str, password: str) -> cl.User | None:
    stamp = await (await store()).sign_in(username, password)
    if stamp is None:
        return None
    # Chainlit signs the metadata into the login cookie: the login holds while the stamp is the user's current one.
    return cl.User(identifier=username, metadata={"provider": "password", LOGIN_STAMP: stamp})


@cl.set_chat_profiles
async def _profiles(user: cl.User | None = None, language: str | None = None) -> list[cl.ChatProfile]:
    profiles = []
    for entry in current_teams():
        if entry.spec is None:
            text = f"**Broken team file** `{entry.path.name}`:\n\n```\n{entry.error}\n```"
            profiles.append(cl.ChatProfile(name=entry.name, markdown_description=text, icon=None))
            continue
        spec = entry.spec
        profiles.append(
            cl.ChatProfile(
                name=spec.name,
                default=spec.name == DEFAULT_TEAM,
                icon=ICON,  # Chainlit shows a profile's description on the empty chat only when it has an icon
                markdown_description=welcome_markdown(spec, Path.cwd() / "public")
                + "".join(f"\n\nStarts a program on the server: `{c}`" for c in programs(spec)),
                starters=[cl.Starter(label=s, message=s) for s in spec.starters],
            )
        )
    return profiles


async def _user_ok() -> str | None:
    user = cl.user_session.get("user")
    name = user.identifier if user else LOCAL_USER
    if name == LOCAL_USER and not await local_mode(connection_of_environ(cl.context.session.environ)):
        await cl.Message(content=LOCAL_REFUSAL, author=SYSTEM).send()
        return None
    return name


def _remember(tid: str, session: ChatSession) -> None:
    for stale in [k for k, v in _live.items() if not v.showing and v is not session]:
        del _live[stale]
    _live[tid] = session


def _team_entry(name: str | None) -> TeamEntry | None:
    entries = current_teams()
    wanted = name or DEFAULT_TEAM
    return next((e for e in entries if e.name == wanted), entries[0] if entries and not name else None)


def _speakers_in_order(conv: Conversation) -> list[str]:
    """Whose avatars a conversation needs, in the team file's order (colours are given in that order), then
    speakers of its own (a consensus team's verdict) and parley."""
    roles = list(conv.team.role_names)
    return [*roles, *sorted(conv.speakers - set(roles)), SYSTEM]


@cl.on_chat_start
async def _start() -> None:
    if await _chainlit_fixes.restore.resuming(_page()):
        return  # the page took this session over as it reopened a thread: the chat is that thread's
    user = await _user_ok()
    if user is None:
        return
    asked_by = _chainlit_fixes.refused_resume(cl.context.session.id)
    if asked_by is not None:  # the page asked for another user's thread: say why it gets a new chat instead
        await cl.context.emitter.send_resume_thread_error(NOT_YOURS.format(user=asked_by))
    entry = _team_entry(cl.user_session.get("chat_profile"))
    if entry is None or entry.spec is None:
        why = entry.error if entry else "no team files found in teams/"
        await cl.Message(
            content=f"**This team cannot run.**\n\n```\n{why}\n```\nPick another team.", author=SYSTEM
        ).send()
        return
    conv, choices, said = await open_conversation(entry.spec)
    await _offer_models(entry.spec, choices, conv.model if conv else None)
    if said:
        await cl.Message(content=said, author=SYSTEM).send()
    if conv is None:
        return
    write_avatars(Path.cwd() / "public", _speakers_in_order(conv))  # a consensus team's verdict too
    cl.user_session.set("parley", ChatSession(conv, user, await cluster()))
    await cl.context.emitter.set_commands(commands())


async def _offer_models(team: Any, choices: list[Any], current: str | None) -> None:
    """The model picker (Chainlit's chat settings), set to the conversation's model (see _modelpicker)."""
    cl.user_session.set("parley_team", team)
    cl.user_session.set("parley_models", choices)
    await cl.ChatSettings(widgets(choices, current)).send()


@cl.on_settings_update
async def _settings(settings: dict[str, Any]) -> None:
    """A model chosen in the chat settings: the conversation is made again on it, until its first message."""
    user = await _user_ok()
    team = cl.user_session.get("parley_team")
    if user is None or team is None:
        return
    session: ChatSession | None = cl.user_session.get("parley")
    choices = cl.user_session.get("parley_models") or []
    conv, said = switch(team, session.conversation if session else None, settings, choices)
    if conv is not None:
        if session is not None:
            await session.conversation.close()
        write_avatars(Path.cwd() / "public", _speakers_in_order(conv))
        cl.user_session.set("parley", ChatSession(conv, user, await cluster()))
        await cl.context.emitter.set_commands(commands())
    if said:
        await cl.Message(content=said, author=SYSTEM).send()


@cl.on_chat_resume
async def _resume(thread: ThreadDict) -> None:
    user = await _user_ok()
    if user is None:
        return
    live = _live.get(thread["id"])
    if live is not None and live.showing and live.user == user:
        cl.user_session.set("parley", live)
        await live.offer_commands()
        conv = live.conversation
        await _offer_models(conv.team, await available_models(conv.team, conv.model), conv.model)
        await live.reattach(_page())
        return
    node = await cluster()
    running = _running_here(thread["id"], node)
    if running is not None:  # someone else's page shows its run (a shared room): this page gets its own view
        conv, run = running
        session = ChatSession(conv, user, node)
        cl.user_session.set("parley", session)
        await session.offer_commands()
        await _offer_models(conv.team, await available_models(conv.team, conv.model), conv.model)
        session.show_run(run, len(conv.history), skip=len(run.events))
        await session.reattach(_page())
        return
    elsewhere = node is not None and await node.live_elsewhere(thread["id"])
    try:  # one conversation per thread in this process: a room's pages share it, and its runs
        shared = live.conversation if live is not None and node is None else None
        conv = shared or await Conversation.resume(await store(), thread["id"])
    except ConfigError as exc:
        await cl.Message(content=f"**This conversation cannot continue:** {exc}", author=SYSTEM).send()
        return
    write_avatars(Path.cwd() / "public", _speakers_in_order(conv))
    await _offer_models(conv.team, await available_models(conv.team, conv.model), conv.model)
    session = ChatSession(conv, user, node)
    _remember(thread["id"], session)
    cl.user_session.set("parley", session)
    await session.offer_commands()
    if not elsewhere:
        # Chainlit read the thread before calling this, and sends it after: a run that ended in between stored its
        # last events after that reading. The page is sent the thread as stored, then drops any button it still
        # holds of a decision settled meanwhile.
        _chainlit_fixes.on_resume_sent(_page(), _stored_thread, session.drop_buttons)
    if node is not None and elsewhere:  # its run goes on in another process of the cluster: show it live here
        remote = await node.watch(conv, user)
        session.conversation = remote.conversation
        session.show_run(remote, len(remote.conversation.history))
        await session.reattach(_page())  # the page is sent the thread as far as the run is shown from


def _running_here(tid: str, node: Node | None) -> tuple[Conversation, Run] | None:
    """The conversation of `tid` and its run, if this process drives it now."""
    live = _live.get(tid)
    if live is not None and live.running and isinstance(live.run, Run):
        return live.conversation, live.run
    relay = node.relays.get(tid) if node is not None else None
    run = relay.conversation.current_run if relay is not None and relay.conversation.running else None
    return (relay.conversation, run) if relay is not None and run is not None else None


def _page() -> WebsocketSession:
    """The page whose socket the handler runs for (chat handlers always run for one)."""
    session = cl.context.session
    assert isinstance(session, WebsocketSession)
    return session


async def _stored_thread(thread: dict[str, Any]) -> dict[str, Any]:
    return dict(await ParleyDataLayer(store).get_thread(str(thread.get("id"))) or thread)


def _title(text: str) -> str:
    """The sidebar's name for a conversation: its first words on one line (PostgreSQL refuses NUL in text)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text[:200]).split())[:200] or "(untitled)"


async def _writer() -> ChatSession | None:
    """The page's chat session if its user may write into its room; else None (a read-only member is told why)."""
    session: ChatSession | None = cl.user_session.get("parley")
    tid = cl.context.session.thread_id
    why = None if session is None else await room_refusal(await store(), session.user, tid, writing=True)
    if why is not None:
        await cl.Message(content=why, author=SYSTEM).send()
    return None if why is not None else session


@cl.on_message
async def _message(message: cl.Message) -> None:
    # What this handler says is not a child of Chainlit's on_message step: a step's last child gets a thumb, and
    # these notes are not stored messages that a rating could be kept with.
    _chainlit_fixes.show_on()
    session: ChatSession | None = cl.user_session.get("parley")
    if session is None:
        await cl.Message(content="Pick a team that can run (see the error above).", author=SYSTEM).send()
        return
    if await _writer() is None:
        return
    if message.command == "Share":  # never starts a conversation, never reaches the team
        return await session.on_message(message.content, message.command, message)
    try:  # checked before a thread is made for it (an empty message has answers of its own, below)
        if message.content.strip():
            human_text(message.content)
    except ConfigError as exc:
        await cl.Message(content=f"**Not sent:** {exc}", author=SYSTEM).send()
        return
    conv = session.conversation
    why = None if conv.running else refusal(conv, cl.user_session.get("parley_models") or [])
    if why is not None:  # before a thread is made for it, and before any model call
        await cl.Message(content=why, author=SYSTEM).send()
        return
    if conv.store is None:
        db = await store()
        tid = cl.context.session.thread_id
        row = await db.get_thread(tid)
        if row is None:
            await conv.save_to(db, session.user, _title(message.content), thread_id=tid)
            thread_made(tid)  # the page's list of threads may now be fetched
        elif await db.access(session.user, tid) not in ("owner", "write"):
            # A thread id free when checked above, taken since by someone else's conversation: never write into it.
            log.warning("refused to write into thread %s of another user", tid)
            await cl.Message(
                content="This conversation belongs to another user: start a new chat.", author=SYSTEM
            ).send()
            return
        else:
            conv.attach(db, tid)
    if not conv.running:  # this page starts the thread's next run: a page opening the thread is shown it
        _remember(cl.context.session.thread_id, session)
    try:
        await session.on_message(message.content, message.command, message)
    except ConfigError as exc:
        await cl.Message(content=str(exc), author=SYSTEM).send()


@cl.on_chat_end
async def _left() -> None:
    """A page left its chat (closed, reloaded or disconnected): an idle conversation's MCP servers end now
    (they start again on the next tool call), a running one's once its run is over."""
    session: ChatSession | None = cl.user_session.get("parley")
    if session is not None:
        await session.page_left(_page())


@cl.on_stop
async def _stopped() -> None:
    """Chainlit's stop button (its `stop` socket event) stops the run as the Stop command does: Chainlit posted "Task
    manually stopped." and cancelled the handler it waited for; the run goes on until it is told to stop, here."""
    session: ChatSession | None = cl.user_session.get("parley")
    if session is not None and session.running and await _user_ok() is not None and await _writer():
        session.stop()


@cl.action_callback("parley_approve")
async def _approve(action: cl.Action) -> None:
    session: ChatSession | None = cl.user_session.get("parley")
    if session is not None:
        if await _writer() is None:
            return
        session.approve(action.payload["request_id"])
    await action.remove()


@cl.action_callback("parley_deny")
async def _deny(action: cl.Action) -> None:
    if (session := await _writer()) is not None:
        await session.ask_reason(action.payload["request_id"])


@cl.action_callback("parley_pick")
async def _pick(action: cl.Action) -> None:
    if (session := await _writer()) is not None:
        await session.resolve(action.payload["escalation_id"], choose=int(action.payload["choose"]))


@cl.action_callback("parley_continue")
async def _continue(action: cl.Action) -> None:
    if (session := await _writer()) is not None:
        await session.resolve(action.payload["escalation_id"], proceed=True)


@cl.action_callback("parley_write")
async def _write(action: cl.Action) -> None:
    if (session := await _writer()) is not None:
        await session.ask_own_answer(action.payload["escalation_id"])


freeze_startup_objects()  # last: everything the app imports is loaded by now
