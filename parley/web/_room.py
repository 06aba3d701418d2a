"""The web chat's Share control: the owner of a stored conversation shares it with named users (a shared room),
sees who has it, and ends a member's access, as `parley share` does and through the same store calls (each share
and revoke audited, naming who did it).

The control is the composer's **Share** command, offered only to the conversation's owner, once it is stored,
in a store that has users (the single-user mode has nobody to share with). Select it and send a user's name: the
page asks whether they may write or only watch (two buttons), then shares. Send it empty: the page lists the
members, each with a button that ends their access at once. Whatever the page sends is checked again here: the
thread is the page's own (never one the browser names), the acting user its login, the member a user of the
store; anything else is refused in words.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import chainlit as cl
from chainlit.types import CommandDict

from ..store import Store, StoreError
from ._composer import say_system
from ._controls import button_id
from ._format import SYSTEM, md_safe

if TYPE_CHECKING:
    from ..cluster import Node
    from ..conversation import Conversation
    from ._chat import ChatSession

__all__ = [
    "REVOKED",
    "SHARE",
    "SHARE_ACTION",
    "UNSHARE_ACTION",
    "Reply",
    "asked",
    "end_view_on_revoke",
    "may_share",
    "own_commands",
    "revoked",
    "room",
    "share_command",
    "shared",
]

log = logging.getLogger("parley.web")

SHARE: CommandDict = {
    "id": "Share",
    "icon": "user-plus",
    "description": "Share this conversation: type a user's name and send (send it empty to see who has it)",
    "button": True,
    "persistent": False,
    "selected": False,
}
SHARE_ACTION = "parley_share"
UNSHARE_ACTION = "parley_unshare"
MAX_NAME = 200
"""A typed name longer than this names nobody (and is never looked up)."""
ROLES = {"write": "can write", "read": "read-only"}
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~!])")
_ESCAPED = r"\\\1"


@dataclass(frozen=True)
class Reply:
    """What the page says back: a note, and the buttons under it."""

    text: str
    actions: list[cl.Action] = field(default_factory=list)


def who(name: str) -> str:
    """A user's name in bold, whatever characters it holds (a name is any printable text)."""
    return f"**{md_safe(_MARKDOWN.sub(_ESCAPED, name))}**"


async def may_share(store: Store | None, tid: str | None, user: str) -> bool:
    """Whether `user`'s page offers the Share control: they own the stored conversation `tid`, and the store has
    users to share it with."""
    if store is None or not tid:
        return False
    row = await store.get_thread(tid)
    return row is not None and row.owner == user and await store.count_users() > 0


async def own_commands(conv: Conversation, user: str) -> list[CommandDict]:
    """The commands `user`'s page offers whether a run is live or not: Share, to the stored conversation's owner."""
    try:
        return [SHARE] if await may_share(conv.store, conv.thread_id, user) else []
    except Exception:  # the store is unreachable: no Share for now, the page goes on
        log.exception("could not tell whether %s may share %s", user, conv.thread_id)
        return []


async def share_command(conv: Conversation, user: str, text: str, message: cl.Message | None) -> None:
    """The Share command sent from `user`'s page: `text` names a user to share `conv` with; empty, the page lists
    its members. It never reaches the team, and never starts a conversation."""
    if message is not None and not text.strip():
        await message.remove()
    await send(await asked(conv.store, conv.thread_id, user, text))


async def _refusal(store: Store | None, tid: str | None, user: str) -> str | None:
    """Why `user` may not share conversation `tid` from this page (in words), or None."""
    if store is None or not tid:
        return "Send a first message: the conversation can be shared once it is saved."
    row = await store.get_thread(tid)
    if row is None:
        return "Send a first message: the conversation can be shared once it is saved."
    if row.owner != user:
        return f"Only this conversation's owner, {who(row.owner)}, shares it."
    if await store.count_users() == 0:
        return (
            "Nobody to share with: this server has no users (the single-user mode). "
            "Add them with `parley users add NAME`, then sign in."
        )
    return None


async def asked(store: Store | None, tid: str | None, user: str, typed: str) -> Reply:
    """What the Share command answers when `user` sends `typed`: the room's members (nothing typed), a refusal
    in words, or the question whether the named user may write."""
    why = await _refusal(store, tid, user)
    if why is not None or store is None or tid is None:
        return Reply(why or "")
    name = typed.strip()
    if not name:
        return await room(store, tid, user)
    if name == user:
        return Reply("You own this conversation already: type the name of someone else.")
    if len(name) > MAX_NAME or not await store.user_exists(name):
        shown = name if len(name) <= 60 else name[:60] + "…"
        return Reply(
            f"Not shared: there is no user {who(shown)} on this server. Check the name "
            "(an administrator adds users with `parley users add NAME`)."
        )
    role = await store.access(name, tid)
    now = f" They have it already ({ROLES[role]}): pick again to change that." if role in ROLES else ""
    buttons = [
        _button(SHARE_ACTION, "share", "Can write", "pencil", {"user": name, "role": "write"}),
        _button(SHARE_ACTION, "share", "Read-only", "eye", {"user": name, "role": "read"}),
    ]
    text = (
        f"**Share this conversation with {who(name)}?** They will see it in their history and watch its runs "
        f"live. *Can write*: they may also send messages, stop the run and decide approvals.{now}"
    )
    return Reply(text, buttons)


async def shared(store: Store | None, tid: str | None, user: str, payload: Any) -> Reply:
    """One of the buttons `asked` offered was clicked: share (or change the role), then show the room."""
    why = await _refusal(store, tid, user)
    if why is not None or store is None or tid is None:
        return Reply(why or "")
    name, role = _field(payload, "user"), _field(payload, "role")
    if name is None or role not in ROLES:
        return Reply("Not shared: that button is not one this page offered.")
    if name == user:
        return Reply("You own this conversation already: type the name of someone else.")
    try:
        new = await store.share(tid, name, "read" if role == "read" else "write", actor=user)
    except StoreError as exc:
        return Reply(f"Not shared: {_plain(exc, name)}")
    said = "Shared with" if new else "Changed the share of"
    members = await room(store, tid, user)
    return Reply(f"{said} {who(name)}: {_may(role)}.\n\n{members.text}", members.actions)


async def revoked(store: Store | None, tid: str | None, user: str, payload: Any) -> Reply:
    """A member's Revoke button was clicked: their access ends now (open pages too), then the room shows."""
    why = await _refusal(store, tid, user)
    if why is not None or store is None or tid is None:
        return Reply(why or "")
    name = _field(payload, "user")
    if name is None:
        return Reply("Nothing revoked: that button is not one this page offered.")
    try:
        gone = await store.unshare(tid, name, actor=user)
    except StoreError as exc:
        return Reply(f"Nothing revoked: {_plain(exc, name)}")
    said = f"{who(name)} no longer has this conversation: their access ended now."
    if not gone:
        said = f"{who(name)} did not have this conversation (any more)."
    members = await room(store, tid, user)
    return Reply(f"{said}\n\n{members.text}", members.actions)


async def room(store: Store, tid: str, owner: str) -> Reply:
    """Who the conversation is shared with, each with a button that ends their access."""
    rows = await store.members(tid)
    if not rows:
        return Reply(
            "**Shared room:** this conversation is yours and shared with nobody. To share it, select **Share**, "
            "type a user's name and send."
        )
    lines = [f"- {who(r.user)} · {ROLES[r.role]} · since {r.created_at:%Y-%m-%d %H:%M} UTC" for r in rows]
    buttons = [
        _button(UNSHARE_ACTION, "unshare", f"Revoke {r.user}", "user-minus", {"user": r.user}) for r in rows
    ]
    text = (
        "**Shared room:** this conversation is yours, shared with:\n\n"
        + "\n".join(lines)
        + "\n\nA member's **Revoke** ends their access at once; **Share** with a name adds someone or changes "
        "their role."
    )
    return Reply(text, buttons)


def _may(role: str) -> str:
    if role == "read":
        return "they may watch it (read-only)"
    return "they may watch and write (send messages, stop the run, decide)"


def _button(name: str, kind: str, label: str, icon: str, payload: dict[str, str]) -> cl.Action:
    return cl.Action(name=name, payload=payload, label=label, icon=icon, id=button_id(kind))


def _field(payload: Any, key: str) -> str | None:
    """A string the page sent back in a button's payload, or None if it is not one (a page may send anything)."""
    value = payload.get(key) if isinstance(payload, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= MAX_NAME else None


def _plain(exc: StoreError, name: str) -> str:
    """The store's refusal, for the web chat: its command-line hints left out."""
    text = str(exc)
    if "no such user" in text:
        return f"there is no user {who(name)} on this server."
    return text.split(": ", 1)[-1]


REVOKED = "**Your access to this conversation ended:** its owner stopped sharing it with you."
"""What a member's page says when the owner ends their access while they watch."""
CARDS = "parley_room_cards"
"""The page's Share messages whose buttons are still offered (its user session's key)."""


async def send(reply: Reply) -> None:
    """Say `reply` on the page, with its buttons; the buttons of the page's earlier Share messages go (a list of
    members, or a question, answered or out of date)."""
    for card in cl.user_session.get(CARDS) or []:
        for action in card.actions:
            await action.remove()
        card.actions = []
    if reply.text:
        card = cl.Message(content=reply.text, author=SYSTEM, actions=reply.actions)
        await card.send()
        cl.user_session.set(CARDS, [card] if reply.actions else [])


async def _session_parts() -> tuple[Store | None, str | None, str] | None:
    chat = cl.user_session.get("parley")
    if chat is None:
        return None
    conv = chat.conversation
    return conv.store, conv.thread_id, chat.user


@cl.action_callback(SHARE_ACTION)
async def _share_clicked(action: cl.Action) -> None:
    parts = await _session_parts()
    if parts is not None:
        await send(await shared(*parts, action.payload))


@cl.action_callback(UNSHARE_ACTION)
async def _unshare_clicked(action: cl.Action) -> None:
    parts = await _session_parts()
    if parts is not None:
        await send(await revoked(*parts, action.payload))
        chat, name = cl.user_session.get("parley"), _field(action.payload, "user")
        if chat is not None and chat.cluster is not None and parts[1] and name:
            await chat.cluster.revoke(parts[1], name)  # every node ends that member's pages now (if revoked)


def end_view_on_revoke(chat: ChatSession) -> None:
    """In a cluster, end the page's view of its run as soon as its user loses access to the conversation, however
    quiet the run (a revoke is announced on the bus; the store confirms it before the view ends)."""
    node, tid, view = chat.cluster, chat.conversation.thread_id, chat.task
    if node is not None and tid is not None and view is not None:
        ending = _end_if_revoked(chat, node, tid, view)
        asyncio.get_running_loop().create_task(ending, name="parley-web-revoked")


async def _end_if_revoked(chat: ChatSession, node: Node, tid: str, view: asyncio.Task[None]) -> None:
    if await node.end_if_revoked(tid, chat.user, view):
        await chat.controls.end()
        await say_system(REVOKED)
