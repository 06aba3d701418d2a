"""Shared rooms: `parley share THREAD USER [--read-only | --revoke]` as the owner uses it, and the store underneath
(on SQLite and PostgreSQL): who may open a conversation, as what, the refusals in words, and the audit of each
share and revoke with who did it."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from parley import _cli_share
from parley.errors import ConfigError
from parley.store import Store, StoreError
from parley.store._shares import access, grant, member_rows, revoke, shared_rows

AT = datetime(2025, 1, 2, 3, 4, tzinfo=UTC)


@pytest.fixture
async def room(store: Store, db_url: str) -> AsyncIterator[tuple[AsyncConnection, str, str]]:
    """A connection to a store with users alice, bob, carol, and (alice's thread id, bob's thread id)."""
    for name in ("alice", "bob", "carol"):
        await store.create_user(name, f"{name}-password-1")
    mine = await store.create_thread("alice", "draft-critique", "scripted", "alice's plan")
    theirs = await store.create_thread("bob", "draft-critique", "scripted", "bob's plan")
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            yield conn, mine, theirs
    finally:
        await engine.dispose()


async def test_a_member_gets_the_role_the_owner_gave_and_loses_it_on_revoke(
    room: tuple[AsyncConnection, str, str],
) -> None:
    conn, tid, _ = room
    assert await access(conn, "alice", tid) == "owner"
    assert await access(conn, "bob", tid) is None
    assert await grant(conn, tid, "bob", "read", "alice", AT) is True
    assert await grant(conn, tid, "carol", "write", "alice", AT) is True
    assert (await access(conn, "bob", tid), await access(conn, "carol", tid)) == ("read", "write")
    assert [(m.user, m.role, m.granted_by) for m in await member_rows(conn, tid)] == [
        ("bob", "read", "alice"),
        ("carol", "write", "alice"),
    ]
    assert await grant(conn, tid, "bob", "write", "alice", AT) is False  # a new role, not a second row
    assert await access(conn, "bob", tid) == "write"
    assert await revoke(conn, tid, "bob", "alice", AT) is True
    assert await access(conn, "bob", tid) is None
    assert await revoke(conn, tid, "bob", "alice", AT) is False
    assert [m.user for m in await member_rows(conn, tid)] == ["carol"]


async def test_the_sidebar_lists_what_others_shared_newest_first(
    store: Store, room: tuple[AsyncConnection, str, str]
) -> None:
    conn, alices, bobs = room
    await grant(conn, alices, "carol", "read", "alice", AT)
    await grant(conn, bobs, "carol", "write", "bob", AT)
    assert [(r.id, r.owner, role) for r, role in await shared_rows(conn, "carol")] == [
        (bobs, "bob", "write"),
        (alices, "alice", "read"),
    ]  # bob's was made last: updated last
    assert await shared_rows(conn, "carol", limit=1) == (await shared_rows(conn, "carol"))[:1]
    assert await shared_rows(conn, "alice") == []


async def test_sharing_is_refused_in_words(room: tuple[AsyncConnection, str, str]) -> None:
    conn, tid, _ = room
    with pytest.raises(StoreError, match=r"is alice's, and only its owner shares it .*--as alice"):
        await grant(conn, tid, "carol", "write", "bob", AT)
    with pytest.raises(StoreError, match="'alice' owns it already"):
        await grant(conn, tid, "alice", "read", "alice", AT)
    with pytest.raises(StoreError, match=r"no such user \(`parley users list` shows them\)"):
        await grant(conn, tid, "mallory", "read", "alice", AT)
    with pytest.raises(StoreError, match="no conversation nope"):
        await grant(conn, "nope", "bob", "read", "alice", AT)
    with pytest.raises(StoreError, match="only its owner shares it"):
        await revoke(conn, tid, "bob", "carol", AT)
    assert await member_rows(conn, tid) == []


async def test_a_store_without_users_cannot_share(store: Store, db_url: str) -> None:
    tid = await store.create_thread("local", "draft-critique", "scripted", "solo")
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            with pytest.raises(StoreError, match=r"no users .*`parley users add NAME`"):
                await grant(conn, tid, "bob", "read", "local", AT)
    finally:
        await engine.dispose()


async def test_each_share_and_revoke_is_audited_with_who_did_it(
    store: Store, room: tuple[AsyncConnection, str, str]
) -> None:
    conn, tid, _ = room
    await grant(conn, tid, "bob", "read", "alice", AT)
    await revoke(conn, tid, "bob", "alice", AT)
    await conn.commit()
    rows = [(r.actor, r.action, r.detail["member"], r.detail["role"]) for r in await store.audit_log(tid)]
    assert rows == [("alice", "share", "bob", "read"), ("alice", "revoke", "bob", "read")]


# -- the command ---------------------------------------------------------------------------------------------


def share(*argv: str) -> None:
    """`parley share ARGV...` (raises the ConfigError parley prints, exit code 2)."""
    parser = argparse.ArgumentParser(prog="parley")
    _cli_share.add(parser.add_subparsers(dest="command"))
    assert _cli_share.run(parser.parse_args(["share", *argv])) == 0


@pytest.fixture
async def shop(store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The store `parley share` opens (PARLEY_DATABASE_URL), with users alice, bob, carol and alice's thread."""
    monkeypatch.setenv("PARLEY_DATABASE_URL", db_url)
    monkeypatch.delenv("PARLEY_USER", raising=False)
    for name in ("alice", "bob", "carol"):
        await store.create_user(name, f"{name}-password-1")
    return await store.create_thread("alice", "draft-critique", "scripted", "alice's plan")


def test_the_owner_shares_lists_and_revokes(
    shop: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    share(shop, "bob", "--read-only", "--as", "alice")
    assert f"shared conversation {shop} with bob: they may watch it (read-only)" in capsys.readouterr().out
    monkeypatch.setenv("PARLEY_USER", "alice")  # as the owner without --as
    share(shop, "carol")
    assert "carol: they may watch and write" in capsys.readouterr().out
    share(shop)
    listing = capsys.readouterr().out
    assert f"conversation {shop} is alice's, shared with:" in listing
    lines = [line.split() for line in listing.splitlines()[2:]]
    assert [(cols[0], cols[1], cols[2]) for cols in lines] == [
        ("bob", "read-only", "alice"),
        ("carol", "write", "alice"),
    ]
    share(shop, "bob", "--revoke")
    assert f"bob no longer has conversation {shop}: their access ended now" in capsys.readouterr().out
    share(shop, "--as", "carol")  # a member may see who else is in the room
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]] == ["carol"]


def test_the_command_refuses_in_words(shop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        ConfigError, match=r"is alice's, and only its owner shares it \(you are acting as bob"
    ):
        share(shop, "carol", "--as", "bob")
    with pytest.raises(ConfigError, match="acting as local"):
        share(
            shop, "carol"
        )  # neither --as nor PARLEY_USER: the single-user mode's user, who owns nothing here
    with pytest.raises(ConfigError, match="'alice' owns it already"):
        share(shop, "alice", "--as", "alice")
    with pytest.raises(ConfigError, match="not shared with 'bob'"):
        share(shop, "bob", "--revoke", "--as", "alice")
    with pytest.raises(ConfigError, match="no conversation 'feedbeef'"):
        share("feedbeef", "bob", "--as", "alice")
    with pytest.raises(ConfigError, match="--revoke needs a USER"):
        share(shop, "--revoke", "--as", "alice")
    with pytest.raises(ConfigError, match="not shared with mallory"):
        share(shop, "--as", "mallory")
