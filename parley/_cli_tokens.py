"""`parley tokens create|list|revoke`: the API tokens programs sign in with (see docs/api.md). parley/_commands.py
registers it as `Command("tokens", add, run)`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .errors import ConfigError
from .store import Store, StoreError, open_for_command

__all__ = ["add", "run"]

LOCAL = "local"


def add(sub: Any) -> None:
    """The `tokens` command and its subcommands, on `parley`'s subparsers."""
    tokens = sub.add_parser(
        "tokens", help="API tokens: programs use them to drive teams over HTTP (docs/api.md)"
    )
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_sub.add_parser(
        "create", help="make a token for a user and print its secret (shown this once only)"
    )
    create.add_argument(
        "name", metavar="USER", help=f"the user it signs in (`{LOCAL}` while the web chat runs without users)"
    )
    create.add_argument("--label", default="", help="what it is for, e.g. the program that uses it")
    listing = tokens_sub.add_parser("list", help="list the tokens: id, user, label, created, last used")
    listing.add_argument("name", metavar="USER", nargs="?", help="only this user's tokens")
    revoke = tokens_sub.add_parser("revoke", help="delete a token: requests with it are refused from now on")
    revoke.add_argument("token_id", metavar="ID", help="the token's id (`parley tokens list` shows it)")


def run(args: argparse.Namespace) -> int:
    """Run `parley tokens ...`; a refusal (no such user or token) is a ConfigError (exit 2)."""
    try:
        return asyncio.run(_tokens(args))
    except StoreError as exc:
        raise ConfigError(str(exc)) from None


async def _tokens(args: argparse.Namespace) -> int:
    store = await open_for_command(hint="")
    try:
        if args.tokens_command == "create":
            await _create(store, args.name, args.label)
        elif args.tokens_command == "list":
            await _list(store, args.name)
        else:
            if not await store.revoke_token(args.token_id, actor="parley tokens"):
                raise ConfigError(f"no API token {args.token_id!r} (`parley tokens list` shows the tokens)")
            print(f"token {args.token_id} revoked: requests with it are refused from now on")
    finally:
        await store.close()
    return 0


async def _create(store: Store, name: str, label: str) -> None:
    if name == LOCAL and await store.count_users() > 0:
        raise ConfigError(
            f"'{LOCAL}' is the single-user mode's user, and users exist now: make the token for one of them "
            "(`parley users list`)"
        )
    tid, secret = await store.create_token(name, label)
    print(secret, flush=True)  # alone on standard output: TOKEN=$(parley tokens create NAME)
    print(
        f"token {tid} created for {name!r}: its secret is shown this once only (parley keeps only a hash of it); "
        "send it as `Authorization: Bearer SECRET`",
        file=sys.stderr,
    )


async def _list(store: Store, name: str | None) -> None:
    rows = await store.tokens_of(name)
    if not rows:
        print(
            "no API tokens" + (f" of {name!r}" if name else "") + " (`parley tokens create USER` makes one)"
        )
        return
    user_w = max(4, *(len(r.owner) for r in rows))
    label_w = min(40, max(5, *(len(r.label) for r in rows)))
    print(f"{'ID':<12}  {'USER':<{user_w}}  {'LABEL':<{label_w}}  {'CREATED (UTC)':<16}  LAST USED (UTC)")
    for r in rows:
        used = f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "never"
        label = r.label if len(r.label) <= label_w else r.label[: label_w - 1] + "…"
        print(f"{r.id:<12}  {r.owner:<{user_w}}  {label:<{label_w}}  {r.created_at:%Y-%m-%d %H:%M}  {used}")
