"""`parley share THREAD [USER] [--read-only | --revoke] [--as USER]`: the owner of a conversation shares it with
named users (a shared room), lists them, or ends one's access. parley/_commands.py registers it as
`Command("share", add, run)`."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from .errors import ConfigError
from .store import Store, StoreError, open_for_command, run_owner

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """The `share` command, on `parley`'s subparsers."""
    share = sub.add_parser(
        "share",
        help="share a conversation with other users (a shared room), list who has it, or end one's access",
        description="Everyone a conversation is shared with may open it in the web chat and over the API; "
        "read-only members watch, the others may also write (say, interrupt, stop, approve, answer). "
        "Only the conversation's owner shares it.",
    )
    share.add_argument(
        "thread",
        metavar="THREAD",
        help="the conversation's id: the end of its web chat address (/thread/ID), or what `parley run` saved it as",
    )
    share.add_argument(
        "user", metavar="USER", nargs="?", help="share with this user (without: list the members)"
    )
    how = share.add_mutually_exclusive_group()
    how.add_argument("--read-only", action="store_true", help="USER watches but cannot write")
    how.add_argument(
        "--revoke", action="store_true", help="end USER's access now (open pages and streams too)"
    )
    share.add_argument(
        "--as",
        dest="actor",
        metavar="USER",
        help="act as this user, the conversation's owner (default: PARLEY_USER, else `local`)",
    )


def run(args: argparse.Namespace) -> int:
    """Run `parley share ...`; a refusal (not the owner, no such user or conversation) is a ConfigError (exit 2)."""
    if args.user is None and (args.read_only or args.revoke):
        flag = "--read-only" if args.read_only else "--revoke"
        raise ConfigError(f"{flag} needs a USER: parley share {args.thread} USER {flag}")
    try:
        return asyncio.run(_share(args))
    except StoreError as exc:
        raise ConfigError(str(exc)) from None


async def _share(args: argparse.Namespace) -> int:
    actor = args.actor or run_owner()
    store = await open_for_command(hint="")
    try:
        row = await store.get_thread(args.thread)
        if row is None:
            raise ConfigError(
                f"no conversation {args.thread!r} (the end of its web chat address, /thread/ID)"
            )
        if args.user is None:
            await _list(store, args.thread, row.owner, actor)
        elif args.revoke:
            if not await store.unshare(args.thread, args.user, actor=actor):
                raise ConfigError(
                    f"conversation {args.thread} is not shared with {args.user!r} "
                    f"(`parley share {args.thread}` lists its members)"
                )
            print(f"{args.user} no longer has conversation {args.thread}: their access ended now")
            await _tell_cluster(args.thread, args.user)
        else:
            role = "read" if args.read_only else "write"
            new = await store.share(args.thread, args.user, role, actor=actor)
            what = (
                "watch it (read-only)" if role == "read" else "watch and write (say, interrupt, stop, decide)"
            )
            said = "shared conversation" if new else "changed the share of conversation"
            print(f"{said} {args.thread} with {args.user}: they may {what}")
    finally:
        await store.close()
    return 0


async def _list(store: Store, tid: str, owner: str, actor: str) -> None:
    if await store.access(actor, tid) is None:
        raise ConfigError(
            f"conversation {tid} is {owner}'s and not shared with {actor}: run as one of its members "
            f"(--as USER or PARLEY_USER)"
        )
    rows = await store.members(tid)
    if not rows:
        print(f"conversation {tid} is {owner}'s and not shared (`parley share {tid} USER` shares it)")
        return
    print(f"conversation {tid} is {owner}'s, shared with:")
    user_w = max(4, *(len(r.user) for r in rows))
    by_w = max(9, *(len(r.granted_by) for r in rows))
    print(f"{'USER':<{user_w}}  {'ROLE':<10}  {'SHARED BY':<{by_w}}  SINCE (UTC)")
    for r in rows:
        role = "read-only" if r.role == "read" else "write"
        print(f"{r.user:<{user_w}}  {role:<10}  {r.granted_by:<{by_w}}  {r.created_at:%Y-%m-%d %H:%M}")


async def _tell_cluster(tid: str, member: str) -> None:
    """In a cluster, every node ends the member's open pages and streams of `tid` at once, however quiet its run;
    should Redis not answer, they end within seconds anyway (they ask the store)."""
    from .cluster import announce_revoked

    try:
        await announce_revoked(tid, member)
    except (ConfigError, OSError) as exc:
        print(
            f"(the cluster's Redis did not answer: {exc}; {member}'s open pages end at their next check instead)"
        )
