"""The web chat's guard and users: another user's conversation is refused in words (403) rather than with the
bare 401 that signs the page out; a removed user's login, and one made before a password change, stop working; the
data layer learns who is signed in. (tests/security/test_sign_out.py does the same against a real server.)"""

from __future__ import annotations

import json

import httpx
import pytest
from chainlit.auth.jwt import create_jwt
from chainlit.user import User
from starlette.types import Receive, Scope, Send

from parley.web._guard import ENDED_REFUSAL, GONE_REFUSAL, NOT_YOURS, WebGuard, request_login
from parley.web._identity import LOGIN_STAMP


async def chainlit_like(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers as Chainlit does: 401 "Unauthorized" for a thread that is not the caller's, else who is signed in."""
    if scope["path"].startswith("/project/thread/alices"):
        status, body = 401, {"detail": "Unauthorized"}
    else:
        status, body = 200, {"login": request_login()}
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


@pytest.fixture
def bearer(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "a-test-secret-of-enough-length-for-hs256-0123456789")

    def of(name: str, stamp: str = "") -> dict[str, str]:
        user = User(identifier=name, metadata={LOGIN_STAMP: stamp} if stamp else {})
        return {"Authorization": f"Bearer {create_jwt(user)}"}

    return of


def client(**kw) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    guard = WebGuard(chainlit_like, **kw)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://127.0.0.1:8000")


async def test_another_users_thread_is_refused_in_words_and_the_caller_stays_signed_in(bearer) -> None:  # type: ignore[no-untyped-def]
    async with client() as http:
        refused = await http.get("/project/thread/alices-thread", headers=bearer("bob"))
        assert refused.status_code == 403  # not 401: the page would sign Bob out
        assert refused.json() == {"detail": NOT_YOURS.format(user="bob")}
        assert "you are signed in as bob" in refused.text
        assert "content-security-policy" in refused.headers
        # An element of it too; anything else passes untouched, and the data layer sees who asks.
        element = await http.get("/project/thread/alices-thread/element/e1", headers=bearer("bob"))
        assert element.status_code == 403
        assert (await http.get("/user", headers=bearer("bob"))).json() == {"login": "bob"}
        assert (await http.get("/user")).json() == {"login": None}
        # Without a login it stays Chainlit's 401 (the login page is the answer then).
        assert (await http.get("/project/thread/alices-thread")).status_code == 401


async def test_a_removed_users_login_opens_nothing(bearer) -> None:  # type: ignore[no-untyped-def]
    stamps = {"alice": "s1"}

    async def stamp_of(name: str) -> str | None:
        return stamps.get(name)

    async with client(login_stamp=stamp_of) as http:
        assert (await http.get("/user", headers=bearer("alice", "s1"))).json() == {"login": "alice"}
        stamps.clear()  # `parley users remove alice`
        gone = await http.get("/user", headers=bearer("alice", "s1"))
        assert gone.status_code == 200 and gone.json() == {
            "login": None
        }  # Chainlit sees no login: its 401 follows
        assert (
            await http.get("/project/thread/alices-thread", headers=bearer("alice", "s1"))
        ).status_code == 401
        assert json.loads(
            (await http.get("/project/thread/alices-thread", headers=bearer("alice", "s1"))).text
        ) == {"detail": GONE_REFUSAL}


async def test_a_login_made_before_the_users_change_opens_nothing(bearer) -> None:  # type: ignore[no-untyped-def]
    stamps = {"alice": "s1", "bob": ""}  # bob: a user of a store made before stamps existed

    async def stamp_of(name: str) -> str | None:
        return stamps.get(name)

    async with client(login_stamp=stamp_of) as http:
        assert (await http.get("/user", headers=bearer("bob"))).json() == {"login": "bob"}
        assert (await http.get("/user", headers=bearer("alice", "s1"))).json() == {"login": "alice"}
        stamps["alice"] = "s2"  # `parley users passwd alice`
        ended = await http.get("/project/thread/alices-thread", headers=bearer("alice", "s1"))
        assert (ended.status_code, ended.json()) == (401, {"detail": ENDED_REFUSAL})
        assert "password was changed" in ENDED_REFUSAL
        assert (await http.get("/user", headers=bearer("alice", "s1"))).json() == {"login": None}
        assert (await http.get("/user", headers=bearer("alice"))).json() == {"login": None}  # no stamp at all
        assert (await http.get("/user", headers=bearer("alice", "s2"))).json() == {"login": "alice"}
        assert (await http.get("/user", headers=bearer("bob"))).json() == {"login": "bob"}
