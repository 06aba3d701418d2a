"""`parley users add|list|remove|passwd|adopt`: the web chat's password users, and who owns the conversations
made before there were any."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from .errors import ConfigError
from .store import Store, StoreError, open_for_command

LOCAL = "local"
"""Who owns conversations made without login (the web chat's single-user mode) and by `parley run`."""
UNOWNED = "made without login (single-user mode) or by `parley run`"


def add_parser(sub: Any) -> None:
    """The `users` command and its subcommands, on `parley`'s subparsers."""
    users = sub.add_parser("users", help="manage web chat users (password login)")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="create a user; asks for the password (or reads it from stdin)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    adopt = add.add_mutually_exclusive_group()
    adopt.add_argument(
        "--adopt",
        action="store_true",
        default=None,
        help=f"give the new user the conversations {UNOWNED} (the first user gets them unless --no-adopt)",
    )
    adopt.add_argument("--no-adopt", dest="adopt", action="store_false", help="leave those conversations be")
    users_sub.add_parser("list", help="list the users and how many conversations each owns")
    remove = users_sub.add_parser("remove", help="delete a user; their conversations stay in the store")
    remove.add_argument("name")
    remove.add_argument("--hand-to", metavar="USER", help="give their conversations to this user first")
    passwd = users_sub.add_parser("passwd", help="set a user's new password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    take = users_sub.add_parser("adopt", help=f"give a user the conversations {UNOWNED}")
    take.add_argument("name")


def users_command(args: argparse.Namespace, read_password: Callable[[bool], str]) -> int:
    """Run `parley users ...`; a refusal (no such user, a name taken) is a ConfigError (exit 2).
    `read_password(from_stdin)` asks for a password (the terminal's way: the command line passes it in)."""
    password = ""
    if args.users_command in ("add", "passwd"):
        password = read_password(args.password_stdin)  # asked before the store opens: no lock held meanwhile
    try:
        return asyncio.run(_users(args, password))
    except StoreError as exc:
        raise ConfigError(str(exc)) from None


async def _users(args: argparse.Namespace, password: str) -> int:
    store = await open_for_command(hint="")
    try:
        if args.users_command == "add":
            await _add(store, args.name, password, args.adopt)
        elif args.users_command == "list":
            await _list(store)
        elif args.users_command == "remove":
            await _remove(store, args.name, args.hand_to)
        elif args.users_command == "passwd":
            await store.set_password(args.name, password)
            print(f"password of {_shown(args.name)} changed: the new one signs in from now on")
            print(f"browsers signed in as {_shown(args.name)} are signed out: they sign in again with it")
        else:
            await _adopt(store, args.name, said_if_none=True)
    finally:
        await store.close()
    return 0


def _shown(name: str) -> str:
    """A user name as typed or stored: the store takes only printable names, but one typed may hold anything."""
    return name if name.isprintable() else repr(name)


async def _add(store: Store, name: str, password: str, adopt: bool | None) -> None:
    first = await store.count_users() == 0
    await store.create_user(name, password)
    if first:
        print(f"user {_shown(name)} created: the web chat now asks everyone to log in")
    else:
        print(f"user {_shown(name)} created")
    if adopt or (adopt is None and first):
        await _adopt(store, name, said_if_none=adopt is True)
    elif first and (left := await store.count_threads(LOCAL)):
        print(
            f"{_many(left)} {UNOWNED} stay unowned: nobody sees {_them(left)} while users exist "
            f"(`parley users adopt NAME` hands {_them(left)} over)"
        )


async def _adopt(store: Store, name: str, *, said_if_none: bool) -> None:
    moved = await store.hand_over_threads(LOCAL, name, actor="parley users")
    if moved:
        print(
            f"{_shown(name)} now owns {_the(moved)} {UNOWNED}: "
            f"{'they are' if moved > 1 else 'it is'} in their history after login"
        )
    elif said_if_none:
        print(f"no conversations {UNOWNED} to hand over")


async def _list(store: Store) -> None:
    rows = await store.list_users()
    unowned = await store.count_threads(LOCAL)
    if not rows:
        print(
            "no users: the web chat runs without login, on this machine only (`parley users add NAME` "
            "creates one)"
        )
    else:
        width = max(4, *(len(_shown(r.name)) for r in rows))
        print(f"{'USER':<{width}}  {'CREATED (UTC)':<16}  CONVERSATIONS")
        for r in rows:
            print(f"{_shown(r.name):<{width}}  {r.created_at:%Y-%m-%d %H:%M}  {r.threads}")
    if rows and unowned:
        print(
            f"\n{_many(unowned)} {UNOWNED}: nobody sees {_them(unowned)} while users exist "
            f"(`parley users adopt NAME` hands {_them(unowned)} over; `PARLEY_USER=NAME parley run ...` saves "
            "new runs for NAME)"
        )


async def _remove(store: Store, name: str, hand_to: str | None) -> None:
    if hand_to is not None:
        if hand_to == name:
            raise ConfigError(f"--hand-to names the user being removed ({_shown(name)}): name another user")
        moved = await store.hand_over_threads(name, hand_to, actor="parley users")
        if moved:
            print(f"{_shown(hand_to)} now owns {_the(moved)} of {_shown(name)}")
    kept = await store.remove_user(name)
    print(f"user {_shown(name)} removed: they can no longer log in")
    if kept:
        print(
            f"their {_many(kept)} {'stay' if kept > 1 else 'stays'} in the store, seen by nobody in the web chat "
            f"(`parley audit ID` still exports {_them(kept)}; `parley users add {_shown(name)}` gives "
            f"{_them(kept)} back)"
        )
    if await store.count_users() == 0:
        print("no users are left: the web chat runs without login again, on this machine only")


def _many(n: int) -> str:
    return f"{n} conversation" if n == 1 else f"{n} conversations"


def _the(n: int) -> str:
    return "the conversation" if n == 1 else f"the {n} conversations"


def _them(n: int) -> str:
    return "it" if n == 1 else "them"
