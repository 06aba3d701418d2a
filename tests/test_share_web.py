"""The web chat's Share control (parley/web/_room.py) on a real store: offered to the owner only, sharing through the
store's own call (audited), the refusals in words, the members listed with a Revoke each, and whatever a page sends
back checked again."""

from __future__ import annotations

import pytest

from parley.store import Store
from parley.web._room import SHARE_ACTION, UNSHARE_ACTION, asked, may_share, revoked, room, shared, who


@pytest.fixture
async def tid(store: Store) -> str:
    """alice's conversation, in a store with users alice, bob and carol."""
    for name in ("alice", "bob", "carol"):
        await store.create_user(name, f"{name}-password-1")
    return await store.create_thread("alice", "draft-critique", "scripted", "alice's plan")


async def test_only_the_owner_of_a_stored_conversation_is_offered_share(store: Store, tid: str) -> None:
    assert await may_share(store, tid, "alice")
    assert not await may_share(store, tid, "bob")  # a member, or a stranger: never
    await store.share(tid, "bob", "write", actor="alice")
    assert not await may_share(store, tid, "bob")
    assert not await may_share(None, None, "alice")  # a new chat, not stored yet
    assert not await may_share(store, "no-such-thread", "alice")


async def test_a_store_without_users_offers_no_share(store: Store) -> None:
    tid = await store.create_thread("local", "draft-critique", "scripted", "plan")
    assert not await may_share(store, tid, "local")
    said = await asked(store, tid, "local", "bob")
    assert "no users" in said.text and not said.actions


async def test_a_name_asks_write_or_read_only_and_the_click_shares_and_audits(store: Store, tid: str) -> None:
    question = await asked(store, tid, "alice", "  bob ")
    assert "Share this conversation with **bob**?" in question.text
    assert [(a.name, a.label, a.payload) for a in question.actions] == [
        (SHARE_ACTION, "Can write", {"user": "bob", "role": "write"}),
        (SHARE_ACTION, "Read-only", {"user": "bob", "role": "read"}),
    ]
    done = await shared(store, tid, "alice", question.actions[1].payload)
    assert done.text.startswith("Shared with **bob**: they may watch it (read-only).")
    assert "**bob** · read-only" in done.text
    assert [(a.name, a.label, a.payload) for a in done.actions] == [
        (UNSHARE_ACTION, "Revoke bob", {"user": "bob"})
    ]
    assert await store.access("bob", tid) == "read"
    again = await asked(store, tid, "alice", "bob")
    assert "They have it already (read-only)" in again.text
    changed = await shared(store, tid, "alice", {"user": "bob", "role": "write"})
    assert changed.text.startswith("Changed the share of **bob**: they may watch and write")
    assert await store.access("bob", tid) == "write"
    audit = [(r.actor, r.action, r.detail["member"], r.detail["role"]) for r in await store.audit_log(tid)]
    assert audit == [("alice", "share", "bob", "read"), ("alice", "share", "bob", "write")]


async def test_refusals_are_said_in_words_and_share_nothing(store: Store, tid: str) -> None:
    nobody = await asked(store, tid, "alice", "mallory")
    assert "there is no user **mallory** on this server" in nobody.text and not nobody.actions
    herself = await asked(store, tid, "alice", "alice")
    assert "You own this conversation already" in herself.text and not herself.actions
    member = await asked(store, tid, "bob", "carol")
    assert member.text == "Only this conversation's owner, **alice**, shares it." and not member.actions
    unsaved = await asked(None, None, "alice", "bob")
    assert "once it is saved" in unsaved.text
    long = await asked(store, tid, "alice", "x" * 5000)
    assert "there is no user" in long.text and len(long.text) < 300
    # What a page sends back is checked again: a forged button shares nothing.
    assert "Only this conversation's owner" in (await shared(store, tid, "bob", {"user": "carol"})).text
    for forged in (None, [], {"user": "bob", "role": "owner"}, {"user": 7, "role": "read"}, {"role": "read"}):
        assert "not one this page offered" in (await shared(store, tid, "alice", forged)).text
    assert (
        "no user **mallory**" in (await shared(store, tid, "alice", {"user": "mallory", "role": "read"})).text
    )
    assert "You own" in (await shared(store, tid, "alice", {"user": "alice", "role": "write"})).text
    assert await store.members(tid) == []
    assert await store.audit_log(tid) == []


async def test_the_room_lists_members_and_revoke_ends_access_at_once(store: Store, tid: str) -> None:
    empty = await room(store, tid, "alice")
    assert "shared with nobody" in empty.text and not empty.actions
    await store.share(tid, "bob", "write", actor="alice")
    await store.share(tid, "carol", "read", actor="alice")
    listed = await asked(store, tid, "alice", "")  # Share sent empty: the members
    assert "**bob** · can write" in listed.text and "**carol** · read-only" in listed.text
    assert [a.label for a in listed.actions] == ["Revoke bob", "Revoke carol"]
    assert "Only this conversation's owner" in (await revoked(store, tid, "bob", {"user": "carol"})).text
    assert await store.access("carol", tid) == "read"
    gone = await revoked(store, tid, "alice", listed.actions[1].payload)
    assert gone.text.startswith("**carol** no longer has this conversation: their access ended now.")
    assert await store.access("carol", tid) is None
    assert [a.label for a in gone.actions] == ["Revoke bob"]
    twice = await revoked(store, tid, "alice", {"user": "carol"})
    assert twice.text.startswith("**carol** did not have this conversation")
    assert "not one this page offered" in (await revoked(store, tid, "alice", {"user": ""})).text
    actions = [(r.actor, r.action, r.detail["member"]) for r in await store.audit_log(tid)]
    assert actions[-1] == ("alice", "revoke", "carol")


def test_a_name_shows_as_written_whatever_it_holds() -> None:
    assert who("bob") == "**bob**"
    assert who("*x*_[y](z)`") == r"**\*x\*\_\[y\](z)\`**"
