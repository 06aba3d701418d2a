"""Shared rooms on a real `parley ui` server with users: alice shares a conversation with bob (read-only) and carol
(write); dave is not in the room. Over the API (tokens from `parley tokens create`) bob reads and is refused writes,
carol writes, dave is refused everything; revoking bob (`parley share --revoke`) refuses his next request and ends
his open event stream. In the web chat (HTTP and the page's socket, no browser) a member sees the room in the
sidebar, marked with its owner's name, and opens it; a non-member still gets the plain "not yours". On the page's
socket bob's messages are refused in words and carol's reach the run; once revoked, bob's open page is told so at
its next event and closed."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _websec import TEAM, WAIT_S, ChatSocket, cookie_of, http, login, serve_users
from ui.conftest import Server

PASSWORDS = {name: f"{name}-password-1" for name in ("alice", "bob", "carol", "dave")}
WATCH_ONLY = "you may watch this conversation: its owner shared it read-only"
READ_ONLY_PAGE = (
    "You may watch this conversation: its owner shared it read-only. Nothing was sent to the team."
)
NOT_SHARED_PAGE = "This conversation is not shared with you (any more)"
NOT_YOURS_API = "This conversation is not yours"
ENDED = "your access to this conversation ended"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_users(tmp_path_factory.mktemp("rooms"), **PASSWORDS)


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, dict[str, str]]:
    """Each user's API authorization header."""
    return {
        name: {"authorization": f"Bearer {server.parley('tokens', 'create', name).stdout.strip()}"}
        for name in PASSWORDS
    }


def _ran(client: httpx.Client, who: dict[str, str], tid: str) -> None:
    """Wait for the conversation's next run to end (the event stream closes after its result)."""
    done = client.get(f"/api/v1/conversations/{tid}/events", params={"until_result": "true"}, headers=who)
    assert done.status_code == 200 and "event: result" in done.text, done.text[-500:]


def _alices_room(server: Server, tokens: dict[str, dict[str, str]]) -> str:
    """A conversation of alice's with one finished run, shared with bob (read-only) and carol (write)."""
    with http(server) as client:
        made = client.post(
            "/api/v1/conversations",
            json={"team": TEAM, "message": "plan the launch"},
            headers=tokens["alice"],
        )
        assert made.status_code == 201, made.text
        tid = str(made.json()["id"])
        _ran(client, tokens["alice"], tid)
    server.parley("share", tid, "bob", "--read-only", "--as", "alice")
    server.parley("share", tid, "carol", "--as", "alice")
    return tid


def test_bob_watches_carol_writes_and_dave_is_refused(
    server: Server, tokens: dict[str, dict[str, str]]
) -> None:
    tid = _alices_room(server, tokens)
    path = f"/api/v1/conversations/{tid}"
    with http(server) as client:
        read = client.get(path, headers=tokens["bob"])
        assert read.status_code == 200 and any(e["type"] == "result" for e in read.json()["events"])
        assert client.get(f"{path}/audit", headers=tokens["bob"]).status_code == 200
        writes = {
            "say": lambda who: client.post(f"{path}/messages", json={"text": "mine now"}, headers=who),
            "stop": lambda who: client.post(f"{path}/stop", headers=who),
            "approve": lambda who: client.post(f"{path}/approvals/x", json={"approve": True}, headers=who),
            "answer": lambda who: client.post(f"{path}/questions/x", json={"text": "yes"}, headers=who),
            "resolve": lambda who: client.post(f"{path}/escalations/x", json={"proceed": True}, headers=who),
        }
        for what, do in writes.items():
            refused = do(tokens["bob"])
            assert refused.status_code == 403 and refused.json()["detail"] == WATCH_ONLY, (what, refused.text)
        for what, do in [("read", lambda who: client.get(path, headers=who)), *writes.items()]:
            refused = do(tokens["dave"])
            assert refused.status_code == 403 and NOT_YOURS_API in refused.json()["detail"], (
                what,
                refused.text,
            )
        said = client.post(
            f"{path}/messages", json={"text": "carol adds a deadline"}, headers=tokens["carol"]
        )
        assert said.status_code == 202, said.text
        _ran(client, tokens["carol"], tid)
    humans = [e["content"] for e in server.events(tid) if e["type"] == "human_message"]
    assert humans == ["plan the launch", "carol adds a deadline"]  # bob's and dave's writes never arrived
    shares = [(r.actor, r.action, r.detail["member"]) for r in server.audit(tid) if r.action == "share"]
    assert shares == [("alice", "share", "bob"), ("alice", "share", "carol")]


class _Stream:
    """An event stream read on a thread of its own: its lines, and whether it has ended."""

    def __init__(self, server: Server, who: dict[str, str], tid: str) -> None:
        self.lines: list[str] = []
        self.ended = threading.Event()
        self._news = threading.Condition()
        self.status = 0
        self._thread = threading.Thread(target=self._read, args=(server, who, tid), daemon=True)
        self._thread.start()

    def _read(self, server: Server, who: dict[str, str], tid: str) -> None:
        try:
            with (
                http(server) as client,
                client.stream("GET", f"/api/v1/conversations/{tid}/events", headers=who) as live,
            ):
                self.status = live.status_code
                for line in live.iter_lines():
                    with self._news:
                        self.lines.append(line)
                        self._news.notify_all()
        finally:
            self.ended.set()
            with self._news:
                self._news.notify_all()

    def wait_for(self, text: str) -> None:
        with self._news:
            seen = self._news.wait_for(
                lambda: any(text in x for x in self.lines) or self.ended.is_set(), WAIT_S
            )
        assert seen and any(text in x for x in self.lines), f"no {text!r} in the stream: {self.lines[-5:]}"


def test_revoking_bob_refuses_his_next_request_and_ends_his_stream(
    server: Server, tokens: dict[str, dict[str, str]]
) -> None:
    tid = _alices_room(server, tokens)
    watching = _Stream(server, tokens["bob"], tid)
    watching.wait_for("event: result")  # the stored run replayed: now waiting for what comes next
    assert watching.status == 200 and not watching.ended.is_set()
    server.parley("share", tid, "bob", "--revoke", "--as", "alice")
    with http(server) as client:
        refused = client.get(f"/api/v1/conversations/{tid}", headers=tokens["bob"])
        assert refused.status_code == 403 and NOT_YOURS_API in refused.json()["detail"]
        said = client.post(
            f"/api/v1/conversations/{tid}/messages", json={"text": "one more"}, headers=tokens["alice"]
        )
        assert said.status_code == 202  # the run's writes wake every stream of the conversation
        assert watching.ended.wait(WAIT_S), "bob's stream is still open after his access was revoked"
        _ran(client, tokens["alice"], tid)
    assert any(ENDED in line for line in watching.lines)
    assert not any("one more" in line for line in watching.lines)  # nothing of the new run reached him
    actions = [(r.actor, r.action, r.detail["member"]) for r in server.audit(tid) if r.action == "revoke"]
    assert actions == [("alice", "revoke", "bob")]


# -- the web chat --------------------------------------------------------------------------------------------


def _sidebar(client: httpx.Client) -> dict[str, dict[str, Any]]:
    listed = client.post("/project/threads", json={"pagination": {"first": 50}, "filter": {}})
    assert listed.status_code == 200, listed.text
    return {t["id"]: t for t in listed.json()["data"]}


def test_a_member_sees_and_opens_the_room_in_the_web_chat(
    server: Server, tokens: dict[str, dict[str, str]]
) -> None:
    tid = _alices_room(server, tokens)
    bob, dave = login(server, "bob", PASSWORDS["bob"]), login(server, "dave", PASSWORDS["dave"])
    with contextlib.closing(bob), contextlib.closing(dave):
        listed = _sidebar(bob)[tid]
        assert "shared by alice, read-only" in listed["name"]
        assert listed["metadata"]["shared_by"] == "alice"
        assert tid not in _sidebar(dave)
        opened = bob.get(f"/project/thread/{tid}")
        assert opened.status_code == 200 and opened.json()["steps"], opened.text
        refused = dave.get(f"/project/thread/{tid}")
        assert refused.status_code == 403 and "This conversation is not yours" in refused.json()["detail"]
        # Reading is all a member does with the thread itself: renaming and deleting stay the owner's.
        renamed = bob.put("/project/thread", json={"threadId": tid, "name": "bob's now"})
        deleted = bob.request("DELETE", "/project/thread", json={"threadId": tid})
        assert renamed.status_code != 200 and deleted.status_code != 200
        assert server.threads("alice") and any(t.id == tid for t in server.threads("alice"))
        assert [t.title for t in server.threads("alice") if t.id == tid] == ["plan the launch"]
        bobs_cookie, daves_cookie = cookie_of(bob), cookie_of(dave)
    resumed = asyncio.run(_resume(server, bobs_cookie, tid))
    assert resumed, "bob's page was not sent alice's thread"
    assert not asyncio.run(_resume(server, daves_cookie, tid))  # dave's page starts a new chat instead
    server.parley("share", tid, "bob", "--revoke", "--as", "alice")
    with contextlib.closing(login(server, "bob", PASSWORDS["bob"])) as bob:
        assert tid not in _sidebar(bob)
        assert bob.get(f"/project/thread/{tid}").status_code == 403
    assert not asyncio.run(_resume(server, bobs_cookie, tid))


async def _resume(server: Server, cookie: str, tid: str) -> bool:
    """Whether a page asking to reopen `tid` is sent that thread (Chainlit's `resume_thread`)."""
    async with ChatSocket(server, cookie, thread_id=tid, wait_started=False) as page:
        await page.wait_for(
            lambda: any(e in ("resume_thread", "resume_thread_error") for e, _ in page.received),
            "the thread, or the words why not",
        )
        return any(e == "resume_thread" and d.get("id") == tid for e, d in page.received)


def _humans(server: Server, tid: str) -> list[str]:
    return [e["content"] for e in server.events(tid) if e["type"] == "human_message"]


def test_on_the_page_bob_is_refused_in_words_and_carols_message_reaches_the_run(
    server: Server, tokens: dict[str, dict[str, str]]
) -> None:
    tid = _alices_room(server, tokens)
    with contextlib.closing(login(server, "bob", PASSWORDS["bob"])) as bob:
        bobs_cookie = cookie_of(bob)
    with contextlib.closing(login(server, "carol", PASSWORDS["carol"])) as carol:
        carols_cookie = cookie_of(carol)
    asyncio.run(_bob_then_carol(server, bobs_cookie, carols_cookie, tid))
    assert _humans(server, tid) == ["plan the launch", "carol writes on the page"]  # bob's never reached it


async def _bob_then_carol(server: Server, bobs_cookie: str, carols_cookie: str, tid: str) -> None:
    async with ChatSocket(server, bobs_cookie, thread_id=tid) as bobs_page:
        await bobs_page.say("bob writes on the page")
        assert await bobs_page.note("its owner shared it read-only") == READ_ONLY_PAGE
        assert not bobs_page.dropped.is_set()  # refused the write, not the page: he goes on watching
        async with ChatSocket(server, carols_cookie, thread_id=tid) as carols_page:
            await carols_page.run_to_end("carol writes on the page")


def test_a_revoked_members_open_page_is_told_at_its_next_event_and_closed(
    server: Server, tokens: dict[str, dict[str, str]]
) -> None:
    tid = _alices_room(server, tokens)
    with contextlib.closing(login(server, "carol", PASSWORDS["carol"])) as carol:
        carols_cookie = cookie_of(carol)
    told = asyncio.run(_revoked_while_open(server, carols_cookie, tid))
    assert any(NOT_SHARED_PAGE in t for t in told), told
    assert _humans(server, tid) == ["plan the launch"]  # the message she sent after the revoke never arrived
    assert [r.detail["member"] for r in server.audit(tid) if r.action == "revoke"] == ["carol"]


async def _revoked_while_open(server: Server, cookie: str, tid: str) -> list[str]:
    """Carol's page opens alice's room; alice revokes carol; the page sends a message. What the page was told."""
    async with ChatSocket(server, cookie, thread_id=tid) as page:
        await page.wait_for(
            lambda: any(e == "resume_thread" and d.get("id") == tid for e, d in page.received), "alice's room"
        )
        await asyncio.to_thread(server.parley, "share", tid, "carol", "--revoke", "--as", "alice")
        assert not page.dropped.is_set()  # nothing is pushed to an idle page: the next event is screened
        await page.say("carol writes after the revoke")
        await asyncio.wait_for(page.dropped.wait(), WAIT_S)
        return page.texts()
