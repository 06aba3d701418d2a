"""A page showing a shared room's run stops showing it once the owner revokes its user's access."""

from __future__ import annotations

from pathlib import Path

from parley import Conversation
from parley.store import Store
from parley.web._access import RoomAccess

ROOT = Path(__file__).resolve().parents[1]


async def test_a_revoked_member_s_view_ends_and_the_owner_s_never_does(store: Store) -> None:
    for name in ("alice", "bob"):
        await store.create_user(name, f"{name}-password-1")
    conv = Conversation(ROOT / "teams" / "content-studio.yaml", model="scripted:tests/ui/scripts/studio.yaml")
    tid = await conv.save_to(store, "alice", "Churn")
    bob, alice = RoomAccess("bob", recheck_s=0), RoomAccess("alice", recheck_s=0)
    assert await bob.ended(conv)  # not shared yet: a page of bob's would stop at once
    await store.share(tid, "bob", "read", actor="alice")
    assert not await bob.ended(conv) and not await alice.ended(conv)
    assert not await bob.may_write(conv) and await alice.may_write(conv)  # Stop, decisions: the owner's
    await store.share(tid, "bob", "write", actor="alice")
    assert await bob.may_write(conv)
    await store.unshare(tid, "bob", actor="alice")
    assert await bob.ended(conv)
    assert not await alice.ended(conv)
    await conv.close()


async def test_access_is_looked_up_at_most_once_per_interval(store: Store) -> None:
    await store.create_user("alice", "alice-password-1")
    conv = Conversation(ROOT / "teams" / "content-studio.yaml", model="scripted:tests/ui/scripts/studio.yaml")
    await conv.save_to(store, "alice", "Churn")
    stranger = RoomAccess("mallory", recheck_s=3600)
    assert not await stranger.ended(conv)  # not looked up yet: a run's every event does not cost a query
    await conv.close()


async def test_the_owner_s_page_stops_asking_once_it_knows_the_conversation_is_theirs(
    store: Store, monkeypatch
) -> None:
    """Sharing takes a room from its members only: a page of the owner's looks its access up once, not once a
    second for as long as the run goes on (two hundred owners' pages made it a tenth of a web process's CPU)."""
    await store.create_user("alice", "alice-password-1")
    conv = Conversation(ROOT / "teams" / "content-studio.yaml", model="scripted:tests/ui/scripts/studio.yaml")
    await conv.save_to(store, "alice", "Churn")
    asked: list[str] = []
    lookup = store.access

    async def counted(user: str, tid: str) -> str | None:
        asked.append(user)
        return await lookup(user, tid)

    monkeypatch.setattr(store, "access", counted)
    alice = RoomAccess("alice", recheck_s=0)
    for _ in range(5):
        assert not await alice.ended(conv)
    assert asked == ["alice"]
    await conv.close()
