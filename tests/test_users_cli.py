"""`parley users add|list|remove|passwd|adopt` as a person at a terminal uses them, and the store underneath:
conversations made before there were users stay with their owner, and feedback on messages is kept and audited."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from pathlib import Path

import pytest

from parley.cli import main
from parley.store import Store, StoreError, default_url

V1 = Path(__file__).resolve().parent / "data" / "v1-store"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    return tmp_path


def parley(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def _with_store(action):  # type: ignore[no-untyped-def]
    store = await Store.open(default_url())
    try:
        return await action(store)
    finally:
        await store.close()


def in_store(action):  # type: ignore[no-untyped-def]
    return asyncio.run(_with_store(action))


def local_threads(n: int) -> list[str]:
    async def make(store: Store) -> list[str]:
        return [await store.create_thread("local", "draft-critique", "local", f"haiku {i}") for i in range(n)]

    return in_store(make)


def owners() -> dict[str, int]:
    async def read(store: Store) -> dict[str, int]:
        mine: dict[str, int] = {}
        for who in ("local", "alice", "bob"):
            mine[who] = await store.count_threads(who)
        return mine

    return in_store(read)


def test_the_first_user_keeps_the_conversations_made_without_login(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    local_threads(2)
    code, out, _ = parley(capsys, monkeypatch, "users", "list")
    assert code == 0 and out.startswith("no users: the web chat runs without login")

    code, out, _ = parley(
        capsys, monkeypatch, "users", "add", "alice", "--password-stdin", stdin="alice-password-1\n"
    )
    assert code == 0
    assert out.splitlines() == [
        "user alice created: the web chat now asks everyone to log in",
        "alice now owns the 2 conversations made without login (single-user mode) or by `parley run`: "
        "they are in their history after login",
    ]
    assert owners() == {"local": 0, "alice": 2, "bob": 0}

    code, out, _ = parley(
        capsys, monkeypatch, "users", "add", "bob", "--password-stdin", stdin="bob-password-22\n"
    )
    assert (code, out) == (0, "user bob created\n")  # a second user takes nothing
    assert owners() == {"local": 0, "alice": 2, "bob": 0}

    # The hand-over is in the audit trail.
    rows = in_store(lambda s: s.audit_log())
    assert [(r.actor, r.action, r.detail["to"]) for r in rows] == [
        ("parley users", "conversations handed over", "alice")
    ]


def test_no_adopt_leaves_them_and_adopt_hands_them_over_later(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    local_threads(1)
    _, out, _ = parley(
        capsys,
        monkeypatch,
        "users",
        "add",
        "alice",
        "--no-adopt",
        "--password-stdin",
        stdin="alice-password-1\n",
    )
    assert "1 conversation made without login (single-user mode) or by `parley run` stay unowned" in out
    assert "`parley users adopt NAME` hands it over" in out
    _, out, _ = parley(capsys, monkeypatch, "users", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["USER", "CREATED", "(UTC)", "CONVERSATIONS"]
    assert lines[1].split()[0] == "alice" and lines[1].split()[-1] == "0"
    assert "1 conversation made without login" in out and "parley users adopt NAME" in out

    code, out, _ = parley(capsys, monkeypatch, "users", "adopt", "alice")
    assert code == 0 and out.startswith("alice now owns the conversation made without login")
    assert owners()["alice"] == 1
    _, out, _ = parley(capsys, monkeypatch, "users", "adopt", "alice")
    assert out == "no conversations made without login (single-user mode) or by `parley run` to hand over\n"

    local_threads(1)  # e.g. a `parley run` after users exist
    _, out, _ = parley(
        capsys, monkeypatch, "users", "add", "bob", "--adopt", "--password-stdin", stdin="bob-password-22\n"
    )
    assert "bob now owns the conversation made without login" in out
    assert owners() == {"local": 0, "alice": 1, "bob": 1}


def test_passwd_changes_the_password_and_says_why_it_cannot(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    parley(capsys, monkeypatch, "users", "add", "alice", "--password-stdin", stdin="alice-password-1\n")
    code, out, _ = parley(
        capsys, monkeypatch, "users", "passwd", "alice", "--password-stdin", stdin="a-new-secret-7\n"
    )
    assert code == 0
    assert out.splitlines() == [
        "password of alice changed: the new one signs in from now on",
        "browsers signed in as alice are signed out: they sign in again with it",
    ]
    assert in_store(lambda s: s.verify_user("alice", "a-new-secret-7"))
    assert not in_store(lambda s: s.verify_user("alice", "alice-password-1"))

    code, _, err = parley(
        capsys, monkeypatch, "users", "passwd", "alice", "--password-stdin", stdin="short\n"
    )
    assert code == 2
    assert (
        err
        == "parley: error: could not change the password of 'alice': the password needs at least 8 characters\n"
    )
    code, _, err = parley(
        capsys, monkeypatch, "users", "passwd", "carol", "--password-stdin", stdin="long-enough-1\n"
    )
    assert code == 2
    assert "no such user (`parley users list` shows them)" in err
    assert in_store(lambda s: s.verify_user("alice", "a-new-secret-7"))


def test_remove_ends_the_login_and_keeps_or_hands_over_the_conversations(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    local_threads(3)
    parley(capsys, monkeypatch, "users", "add", "alice", "--password-stdin", stdin="alice-password-1\n")
    parley(capsys, monkeypatch, "users", "add", "bob", "--password-stdin", stdin="bob-password-22\n")

    code, out, _ = parley(capsys, monkeypatch, "users", "remove", "alice", "--hand-to", "bob")
    assert code == 0
    assert out.splitlines() == [
        "bob now owns the 3 conversations of alice",
        "user alice removed: they can no longer log in",
    ]
    assert owners() == {"local": 0, "alice": 0, "bob": 3}
    assert not in_store(lambda s: s.verify_user("alice", "alice-password-1"))

    code, _, err = parley(capsys, monkeypatch, "users", "remove", "alice")
    assert code == 2 and "could not remove user 'alice': no such user" in err

    code, out, _ = parley(capsys, monkeypatch, "users", "remove", "bob")
    assert code == 0
    assert out.splitlines() == [
        "user bob removed: they can no longer log in",
        "their 3 conversations stay in the store, seen by nobody in the web chat (`parley audit ID` still exports "
        "them; `parley users add bob` gives them back)",
        "no users are left: the web chat runs without login again, on this machine only",
    ]
    assert owners()["bob"] == 3  # kept
    _, out, _ = parley(capsys, monkeypatch, "users", "list")
    assert out.startswith("no users:")


# -- the store: feedback --------------------------------------------------------------------------------


async def test_feedback_is_kept_per_message_replaced_taken_back_and_audited(store: Store) -> None:
    tid = await store.create_thread("alice", "draft-critique", "local", "haiku")
    fid = await store.upsert_feedback(tid, "step-1", 1, actor="alice", message="An autumn haiku")
    again = await store.upsert_feedback(tid, "step-1", 0, actor="alice", comment="too short")
    assert again == fid  # one rating per message: the latest
    other = await store.upsert_feedback(tid, "step-2", 1, actor="alice")
    [first, second] = await store.feedback_of(tid)
    assert (first.id, first.step_id, first.value, first.comment, first.message) == (
        fid,
        "step-1",
        0,
        "too short",
        "An autumn haiku",  # kept from the first rating
    )
    assert (second.id, second.value) == (other, 1)

    with pytest.raises(StoreError, match="the conversation is not bob's"):
        await store.upsert_feedback(tid, "step-1", 1, actor="bob")
    with pytest.raises(StoreError, match="it is not bob's"):
        await store.delete_feedback(fid, actor="bob")
    with pytest.raises(StoreError, match="the rating is 1"):
        await store.upsert_feedback(tid, "step-1", 5, actor="alice")

    assert await store.delete_feedback(fid, actor="alice")
    assert not await store.delete_feedback(fid, actor="alice")
    assert [r.step_id for r in await store.feedback_of(tid)] == ["step-2"]
    trail = [(r.action, r.detail["decision"], r.detail["step"]) for r in await store.audit_log(tid)]
    assert trail == [
        ("feedback", "thumbs up", "step-1"),
        ("feedback", "thumbs down", "step-1"),
        ("feedback", "thumbs up", "step-2"),
        ("feedback", "removed", "step-1"),
    ]
    await store.delete_thread(tid)
    assert await store.feedback_of(tid) == []


def test_feedback_is_in_the_audit_export(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def rate(store: Store) -> str:
        tid = await store.create_thread("local", "draft-critique", "local", "haiku")
        await store.upsert_feedback(
            tid, "m1", 0, actor="local", comment="it invents figures", message="Revenue up 40%"
        )
        return tid

    tid = in_store(rate)
    code, out, _ = parley(capsys, monkeypatch, "audit", tid)
    assert code == 0
    assert "| local | feedback | thumbs down | text: it invents figures; message: Revenue up 40% |" in out
    _, out, _ = parley(capsys, monkeypatch, "audit", tid, "--format", "jsonl")
    [row] = [json.loads(line) for line in out.splitlines()]
    assert (row["what"], row["decision"], row["detail"]["message"]) == (
        "feedback",
        "thumbs down",
        "Revenue up 40%",
    )


async def test_a_store_made_before_users_feedback_and_login_stamps_opens_and_gains_them(
    tmp_path: Path,
) -> None:
    db = tmp_path / "v1.sqlite3"
    shutil.copyfile(V1 / "store.sqlite3", db)
    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    try:
        [thread, *_] = await store.list_threads("dana")  # its conversations were saved as PARLEY_USER=dana
        await store.upsert_feedback(thread.id, "step", 1, actor="dana")
        await store.create_user("alice", "alice-password-1")
        assert await store.sign_in("alice", "alice-password-1") == await store.login_stamp("alice") != ""
        assert await store.hand_over_threads("dana", "alice", actor="test") == 5
        assert [(u.name, u.threads) for u in await store.list_users()] == [("alice", 5)]
        assert [f.value for f in await store.feedback_of(thread.id)] == [1]
    finally:
        await store.close()
