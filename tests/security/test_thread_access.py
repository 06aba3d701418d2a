"""One user cannot read, change or write into another user's conversation, knowing its id or not.

Real `parley ui` servers with password users; Bob tries every door Chainlit has to Alice's
thread: its REST endpoints (thread, thread list, rename, delete, share, element, file, action)
and its socket (resuming her thread, taking over her session, writing into a thread id she uses).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from _websec import ChatSocket, cookie_of, http, login, refused_socket, serve_users, server_log
from ui.conftest import Server, run_async

SECRET = "Alice's confidential churn memo"
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_users(tmp_path_factory.mktemp("access"), **PASSWORDS)


@pytest.fixture(scope="module")
def alices_chat(server: Server) -> tuple[str, str]:
    """Alice's conversation, made over the socket: (thread id, the session id of her tab)."""
    alice = login(server, "alice", PASSWORDS["alice"])

    async def chat() -> tuple[str, str]:
        async with ChatSocket(server, cookie_of(alice)) as tab:
            await tab.run_to_end(SECRET)
            assert tab.thread_id is not None
            return tab.thread_id, tab.session_id

    return run_async(chat)


def _is_refused(answer: httpx.Response) -> bool:
    return answer.status_code in (401, 403, 404) and SECRET not in answer.text


def test_bob_cannot_reach_alices_thread_over_http(server: Server, alices_chat: tuple[str, str]) -> None:
    tid, alice_session = alices_chat
    alice = login(server, "alice", PASSWORDS["alice"])
    bob = login(server, "bob", PASSWORDS["bob"])
    nobody = http(server)
    element = str(uuid.uuid4())
    doors: dict[str, Callable[[httpx.Client], httpx.Response]] = {
        "read the thread": lambda c: c.get(f"/project/thread/{tid}"),
        "read it shared": lambda c: c.get(f"/project/share/{tid}"),
        "rename it": lambda c: c.put("/project/thread", json={"threadId": tid, "name": "owned by bob"}),
        "share it": lambda c: c.put("/project/thread/share", json={"threadId": tid, "isShared": True}),
        "delete it": lambda c: c.request("DELETE", "/project/thread", json={"threadId": tid}),
        "read an element": lambda c: c.get(f"/project/thread/{tid}/element/{element}"),
        "read a file of her tab": lambda c: c.get(
            f"/project/file/{element}", params={"session_id": alice_session}
        ),
        "upload into her tab": lambda c: c.post(
            "/project/file",
            params={"session_id": alice_session},
            files={"file": ("x.txt", b"bob was here", "text/plain")},
        ),
        "press a button in her tab": lambda c: c.post(
            "/project/action",
            json={
                "sessionId": alice_session,
                "action": {
                    "name": "parley_approve",
                    "payload": {"request_id": "x"},
                    "forId": element,
                    "id": element,
                },
            },
        ),
        "change an element of her tab": lambda c: c.put(
            "/project/element",
            json={
                "sessionId": alice_session,
                "element": {
                    "id": element,
                    "type": "custom",
                    "name": "x",
                    "display": "inline",
                    "props": {},
                    "forId": element,
                },
            },
        ),
    }
    refused = {}
    for door, knock in doors.items():
        for who, client in (("bob", bob), ("nobody", nobody)):
            answer = knock(client)
            refused[f"{who}: {door}"] = answer.status_code
            assert _is_refused(answer), f"{who} could {door}: {answer.status_code} {answer.text[:300]}"
    assert len(refused) == 20

    # Bob's own list holds none of Alice's threads, whatever filter he sends.
    listed = bob.post(
        "/project/threads",
        json={"pagination": {"first": 50}, "filter": {"userId": "alice", "search": "churn"}},
    )
    assert listed.status_code == 200 and listed.json()["data"] == []
    assert (
        nobody.post("/project/threads", json={"pagination": {"first": 50}, "filter": {}}).status_code == 401
    )

    # Nothing changed, and Alice still has it all.
    mine = alice.get(f"/project/thread/{tid}")
    assert mine.status_code == 200 and SECRET in mine.text and mine.json()["name"] == SECRET
    assert [t.id for t in server.threads("alice")] == [tid] and server.threads("bob") == []
    # Sharing is off: even after Alice asks to share it, nobody else can read it.
    assert alice.put("/project/thread/share", json={"threadId": tid, "isShared": True}).status_code == 200
    assert _is_refused(bob.get(f"/project/share/{tid}")) and _is_refused(nobody.get(f"/project/share/{tid}"))


def test_bob_cannot_open_alices_thread_over_the_socket(server: Server, alices_chat: tuple[str, str]) -> None:
    tid, alice_session = alices_chat
    bob = cookie_of(login(server, "bob", PASSWORDS["bob"]))

    async def knock() -> list[str]:
        # Resuming her thread by its id connects him as a new chat, and the page hears why in words.
        async with ChatSocket(server, bob, thread_id=tid) as tab:
            await tab.wait_for(
                lambda: any(
                    event == "resume_thread_error" and "not yours" in str(data)
                    for event, data in tab.received
                ),
                "the words saying the conversation is not his",
            )
            assert not any(SECRET in text for text in tab.texts())
        return [
            await refused_socket(server, bob, session_id=alice_session),  # take over her tab's session
            await refused_socket(server, "", thread_id=tid),  # no login at all
            await refused_socket(server, "access_token=forged.jwt.value", thread_id=tid),
        ]

    reasons = run_async(knock)
    assert len(reasons) == 3
    log = server_log(server)
    assert "asked for another user's thread: connected as a new chat" in log
    assert "Authorization for the session failed" in log
    assert SECRET not in log
    assert [e["content"] for e in server.events(tid) if e["type"] == "human_message"] == [SECRET]


def test_bob_cannot_write_into_a_thread_id_alice_took_after_he_connected(server: Server) -> None:
    """Chainlit lets the page name its thread id. Bob opens a tab on an id nobody uses yet and gets Alice
    to open it too (a link to /thread/ID); once she has written there, his messages must not join it."""
    alice = cookie_of(login(server, "alice", PASSWORDS["alice"]))
    bob = cookie_of(login(server, "bob", PASSWORDS["bob"]))
    tid = str(uuid.uuid4())

    async def race() -> list[str]:
        async with ChatSocket(server, bob, thread_id=tid) as bobs_tab:
            async with ChatSocket(server, alice, thread_id=tid) as alices_tab:
                await alices_tab.run_to_end(SECRET)
            await bobs_tab.say("Bob was here")
            # His socket is screened at his next event: the thread is Alice's now, and not shared with him.
            await bobs_tab.note("This conversation is not shared with you")
            return bobs_tab.texts()

    shown_to_bob = run_async(race)
    assert not any(SECRET in text for text in shown_to_bob)
    stored = server.events(tid)
    assert [e["content"] for e in stored if e["type"] == "human_message"] == [SECRET]
    assert not any("Bob was here" in str(e) for e in stored)
    assert [t.owner for t in server.threads("alice") if t.id == tid] == ["alice"]


def test_a_forged_cookie_is_not_a_login(server: Server) -> None:
    alice = login(server, "alice", PASSWORDS["alice"])
    token = alice.cookies["access_token"]
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[::-1]}"
    for cookie in (forged, "", "garbage"):
        with http(server) as client:
            client.cookies.set("access_token", cookie)
            assert client.get("/user").status_code == 401
            assert (
                client.post("/project/threads", json={"pagination": {"first": 5}, "filter": {}}).status_code
                == 401
            )
