"""Changing or removing a user signs out the browsers already signed in as them, on every route and on the socket.

A login cookie is signed and lasts days: stolen, it must stop working once the user's password is changed, and a
user removed and created again must not get their old cookies back. Real `parley ui` servers (on SQLite, and on
PostgreSQL when one is reachable), logins through the login form's POST, the real `parley users` command, and a
Socket.IO client as a page's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from _websec import WAIT_S, ChatSocket, cookie_of, login, refused_socket, script, server_log
from sqlalchemy.engine import make_url
from ui.conftest import Server, run_async

from parley.store import normalise_url, redact

PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}
ENDED = "Your sign-in has ended: your password was changed, or your user was removed"
GONE = "This user no longer exists on this server"
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


class PostgresServer(Server):
    """`parley ui` on a PostgreSQL database (`PARLEY_DATABASE_URL`), its other data in its data folder."""

    def __init__(self, data_dir: Path, script: str, *, database: str) -> None:
        super().__init__(data_dir, script)
        self.database = database

    @property
    def db_url(self) -> str:
        return self.database

    def env(self) -> dict[str, str]:
        return super().env() | {"PARLEY_DATABASE_URL": self.database}


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(False), timeout=5
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def _postgres_database() -> Iterator[str]:
    """A database of its own for this module's server (other tests drop the tables of theirs), dropped after."""
    base = os.environ.get("PARLEY_TEST_PG_URL") or PG_DEFAULT
    name = f"parley_signout_{uuid.uuid4().hex[:12]}"
    try:
        run_async(lambda: _admin(base, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable at {redact(base)} ({type(exc).__name__}: {exc})")
    try:
        yield normalise_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        run_async(lambda: _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp(f"signout-{request.param}")
    chat_script = str(script(data / "script.yaml", runs=12))
    with contextlib.ExitStack() as cleanup:
        if request.param == "postgresql":
            database = cleanup.enter_context(_postgres_database())
            server: Server = PostgresServer(data, chat_script, database=database)
        else:
            server = Server(data, chat_script)
        cleanup.callback(server.stop)
        for name, password in PASSWORDS.items():
            server.parley("users", "add", name, "--password-stdin", stdin=password + "\n")
        yield server.start()


def _refused(client: httpx.Client, path: str, words: str, cookie: str) -> None:
    """The old login opens nothing at `path`: 401 with `words`, and the browser is told to drop the cookie."""
    token = cookie.split("access_token=", 1)[1].split(";")[0]
    for credentials in ({"Cookie": cookie}, {"Authorization": f"Bearer {token}"}):
        answer = client.get(path, headers=credentials)
        assert answer.status_code == 401, (path, answer.status_code, answer.text[:200])
        assert words in answer.json()["detail"], answer.text
        assert "reply" not in answer.text
    dropped = client.get(path, headers={"Cookie": cookie}).headers.get_list("set-cookie")
    assert any(h.startswith("access_token=") and "Max-Age=0" in h for h in dropped), dropped


def _signed_in_as(client: httpx.Client) -> str | None:
    answer = client.get("/user")
    return answer.json()["identifier"] if answer.status_code == 200 else None


def test_passwd_signs_out_every_browser_of_that_user_and_only_them(server: Server) -> None:
    alice, bob = (login(server, name, password) for name, password in PASSWORDS.items())
    old_cookie, bobs_cookie = cookie_of(alice), cookie_of(bob)
    new_password = "alice-new-password-3"

    async def go() -> tuple[str, str, str]:
        async with ChatSocket(server, old_cookie) as tab, ChatSocket(server, bobs_cookie) as bobs_tab:
            await tab.run_to_end("Plan the launch")
            assert tab.thread_id is not None
            assert _signed_in_as(alice) == "alice"  # the cookie works before the change
            assert alice.get(f"/project/thread/{tab.thread_id}").status_code == 200
            changed = await asyncio.to_thread(
                server.parley, "users", "passwd", "alice", "--password-stdin", stdin=new_password + "\n"
            )
            assert "browsers signed in as alice are signed out" in changed.stdout
            # The tab already open: its next message runs nothing, says why, and its socket is closed.
            runs = tab.runs_ended()
            await tab.say("Plan the party")
            told = await tab.note(ENDED)
            await asyncio.wait_for(tab.dropped.wait(), WAIT_S)
            assert tab.runs_ended() == runs and not any("reply 2" in t for t in tab.texts()), tab.texts()
            # A tab connecting (or reconnecting with its session id) with the old cookie is refused.
            reconnect = await refused_socket(
                server, old_cookie, session_id=tab.session_id, thread_id=tab.thread_id, wait_started=False
            )
            await bobs_tab.run_to_end("Plan the budget")  # another user's tab goes on
            return tab.thread_id, told, reconnect

    tid, told, reconnect = run_async(go)
    assert ENDED in told and ENDED in reconnect
    with httpx.Client(base_url=server.url, timeout=WAIT_S) as stranger:
        for path in ("/user", f"/project/thread/{tid}"):
            _refused(stranger, path, ENDED, old_cookie)
        assert (
            stranger.post(
                "/auth/jwt", headers={"Authorization": f"Bearer {old_cookie.split('=', 1)[1]}"}
            ).status_code
            == 401
        )
        old_password = stranger.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
        assert old_password.status_code == 401
    assert _signed_in_as(bob) == "bob"

    again = login(server, "alice", new_password)  # a fresh login works, her conversation with it

    async def fresh() -> None:
        async with ChatSocket(server, cookie_of(again), thread_id=tid) as tab:
            await tab.run_to_end("Plan the party")

    assert _signed_in_as(again) == "alice"
    assert again.get(f"/project/thread/{tid}").status_code == 200
    run_async(fresh)
    assert "Traceback" not in server_log(server)


def test_a_user_removed_and_added_again_does_not_get_old_logins_back(server: Server) -> None:
    password = "carol-password-4"
    server.parley("users", "add", "carol", "--password-stdin", stdin=password + "\n")
    carol = login(server, "carol", password)
    old_cookie = cookie_of(carol)

    async def removed() -> str:
        async with ChatSocket(server, old_cookie) as tab:
            await tab.run_to_end("Plan the launch")
            await asyncio.to_thread(server.parley, "users", "remove", "carol")
            await tab.say("Plan the party")
            told = await tab.note(GONE)
            await asyncio.wait_for(tab.dropped.wait(), WAIT_S)
            return told

    assert GONE in run_async(removed)
    with httpx.Client(base_url=server.url, timeout=WAIT_S) as stranger:
        _refused(stranger, "/user", GONE, old_cookie)

    # The same name and the same password again: a new user, whose old cookies stay signed out.
    server.parley("users", "add", "carol", "--password-stdin", stdin=password + "\n")
    with httpx.Client(base_url=server.url, timeout=WAIT_S) as stranger:
        _refused(stranger, "/user", ENDED, old_cookie)
    assert ENDED in run_async(lambda: refused_socket(server, old_cookie))

    again = login(server, "carol", password)
    assert _signed_in_as(again) == "carol"

    async def fresh() -> None:
        async with ChatSocket(server, cookie_of(again)) as tab:
            await tab.run_to_end("Plan the launch")

    run_async(fresh)
    assert "Traceback" not in server_log(server)
