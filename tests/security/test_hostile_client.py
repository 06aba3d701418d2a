"""A hostile client of the web chat: it chooses every id, header and origin a browser page would not.

Real servers (`parley ui`, or `chainlit run app.py` as the README documents it), a Socket.IO client and
httpx. What holds:
- ids that become paths or keys are of the server's own form (a UUID), or the socket is refused, with
  the reason, before Chainlit uses them (issue 13, hole 1);
- local mode (no login) comes from the address the server listens on and the peer's address, never from a
  header a client chose; `chainlit run app.py` on every interface without users refuses to start (hole 2);
- a page from another origin, even another port of this machine, can neither drive the socket nor change
  anything over HTTP (hole 3);
- local mode's login works only while local mode holds: once a user exists, or the data folder is served on
  every interface, its cookie opens no route, no socket and no event of a tab already open.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _websec import (
    ROOT,
    WAIT_S,
    ChatSocket,
    add_users,
    cookie_of,
    http,
    local_cookie,
    login,
    refused_socket,
    script,
    server_log,
)
from ui.conftest import Server, free_port, run_async

PROXY_ORIGIN = "https://chat.example.com"
"""The public address of a deployment behind a proxy, as the operator lists it in PARLEY_ALLOWED_ORIGINS."""
RELAYED = {"X-Forwarded-For": "203.0.113.9"}
"""What a proxy on this machine adds for a client of somewhere else (uvicorn trusts it from 127.0.0.1)."""


class LocalServer(Server):
    """`parley ui` on loopback with no user (local mode)."""


class ProxiedServer(Server):
    """`parley ui` on loopback behind a proxy: the operator lists the public origin (and a malformed entry)."""

    def env(self) -> dict[str, str]:
        return super().env() | {"PARLEY_ALLOWED_ORIGINS": f" {PROXY_ORIGIN}/ , not an origin"}


class ChainlitRun(Server):
    """`chainlit run app.py --host HOST`, as the README documents it (no PARLEY_UI_HOST)."""

    def __init__(self, data_dir: Path, script_path: Path, host: str) -> None:
        super().__init__(data_dir, str(script_path))
        self.host = host

    def env(self) -> dict[str, str]:
        return super().env() | {"CHAINLIT_AUTH_SECRET": "test-secret-" + "x" * 40}

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "chainlit",
            "run",
            "app.py",
            "--headless",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]

    def launch(self) -> ChainlitRun:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        Server.running.append(self)
        return self


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("local")
    server = LocalServer(data, str(script(data / "script.yaml", runs=12))).start()
    try:
        yield server
    finally:
        server.stop()


# -- hole 1: ids of the server's own form ------------------------------------------------------------------


def test_ids_not_of_the_servers_form_are_refused_at_connect(local: Server, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "keep").mkdir(parents=True)
    (victim / "keep" / "notes.txt").write_text("still here", encoding="utf-8")
    escape = os.path.relpath(victim, ROOT / ".files")  # Chainlit's .files/<sessionId>, deleted at session end
    cookie = local_cookie(local)

    async def knock() -> dict[str, str]:
        reasons = {
            "thread id": await refused_socket(local, cookie, thread_id="x" + uuid.uuid4().hex + "/../.."),
            "session id": await refused_socket(local, cookie, session_id=escape),
            "absolute session id": await refused_socket(local, cookie, session_id=str(victim)),
            "no session id": await refused_socket(local, cookie, auth={"sessionId": None}),
            "client type": await refused_socket(local, cookie, auth={"clientType": "../webapp"}),
            "user env": await refused_socket(local, cookie, auth={"userEnv": "not json"}),
        }
        async with ChatSocket(local, cookie) as tab:  # the page's own ids: the chat works
            await tab.run_to_end("Plan the launch")
            assert tab.thread_id is not None and uuid.UUID(tab.thread_id)
        return reasons

    reasons = run_async(knock)
    for what in ("thread id", "session id", "absolute session id", "no session id"):
        assert "is not of this server's form (a UUID)" in reasons[what], (what, reasons[what])
    assert "client type '../webapp' is not one of" in reasons["client type"]
    assert "userEnv must be a JSON object" in reasons["user env"]
    assert (victim / "keep" / "notes.txt").read_text(encoding="utf-8") == "still here"
    assert not (local.data_dir / "workspaces").exists() or all(
        uuid.UUID(p.name) for p in (local.data_dir / "workspaces").iterdir()
    )
    log = server_log(local)
    assert "refused a socket: thread id" in log and "Traceback" not in log


def test_chainlit_is_still_what_parley_patches(tmp_path: Path) -> None:
    """parley/web/_chainlit_fixes.py reaches into Chainlit: an upgrade that changes what it relies on fails here."""
    probe = """
import json
import parley.web.app
from chainlit.session import HTTPSession
from parley.web import _chainlit_fixes

def folder(session_id):
    try:
        return str(HTTPSession(id=session_id, client_type="webapp").files_dir)
    except ValueError as exc:
        return "refused: " + str(exc)

print(json.dumps({"broken": _chainlit_fixes.check(), "good": folder("2b1c7d4e-1f0a-4c47-9a8e-0d4f5a6b7c8d"),
                  "escape": folder("../victim"), "root": folder(".")}))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PARLEY_DATA_DIR": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["broken"] == [], "Chainlit changed under parley's workarounds:\n" + "\n".join(
        found["broken"]
    )
    assert found["good"] == str((ROOT / ".files" / "2b1c7d4e-1f0a-4c47-9a8e-0d4f5a6b7c8d").resolve())
    assert found["escape"].startswith("refused: ") and found["root"].startswith("refused: ")


# -- hole 2: local mode from facts, never headers ----------------------------------------------------------


def test_local_mode_is_never_granted_by_a_header(local: Server) -> None:
    with http(local) as client:
        assert client.post("/auth/header").status_code == 200  # this machine, directly: local mode
    with http(local) as client:  # a client elsewhere, relayed by a proxy on this machine
        relayed = client.post("/auth/header", headers=RELAYED)
        assert relayed.status_code == 401 and "access_token" not in relayed.cookies
    with http(local) as client:  # a page whose name was pointed at 127.0.0.1 (DNS rebinding)
        rebound = client.post("/auth/header", headers={"Host": f"attacker.example:{local.port}"})
        assert rebound.status_code == 401

    async def relayed_tab() -> str:
        # The local login cookie, used by a client the proxy relays: the socket is refused, saying why.
        return await refused_socket(local, local_cookie(local), headers=RELAYED, wait_started=False)

    assert "sign in" in run_async(relayed_tab)


def _exit_before_listening(server: Server, what: str) -> int:
    """Start `server`, which must exit before it listens (a server that listens never does): its exit code."""
    server.launch()
    assert server.proc is not None
    try:
        return server.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{what} started without any user:\n{server.log_tail()}") from None
    finally:
        server.stop()


def test_chainlit_run_on_every_interface_without_users_refuses_to_start(tmp_path: Path) -> None:
    server = ChainlitRun(tmp_path / "data", script(tmp_path / "script.yaml"), "0.0.0.0")
    code = _exit_before_listening(server, "chainlit run app.py --host 0.0.0.0")
    assert code != 0
    assert (
        "serving on 0.0.0.0 needs login: create a user first with `parley users add NAME`"
        in server.log_tail()
    )


def test_on_every_interface_the_host_header_grants_nothing(tmp_path: Path) -> None:
    """`chainlit run app.py --host 0.0.0.0`: the README's way to serve a network (users required). Should the
    users be gone later, a client saying `Host: 127.0.0.1` still gets no login-free access."""
    server = ChainlitRun(tmp_path / "data", script(tmp_path / "script.yaml"), "0.0.0.0")
    add_users(server, alice="alice-password-1")
    server.start()
    try:
        with sqlite3.connect(server.data_dir / "parley.db") as db:
            db.execute("DELETE FROM users")
        with http(server) as client:
            answer = client.post("/auth/header", headers={"Host": f"127.0.0.1:{server.port}"})
            assert answer.status_code == 401 and "access_token" not in answer.cookies
            assert client.get("/user").status_code == 401
    finally:
        server.stop()


# -- hole 3: origins ---------------------------------------------------------------------------------------


def test_another_origin_cannot_drive_the_socket(local: Server) -> None:
    cookie = local_cookie(local)
    other = f"http://127.0.0.1:{free_port()}"  # a page served on another port of this machine

    async def knock() -> list[str]:
        refused = [
            await refused_socket(local, cookie, headers={"Origin": other}),
            await refused_socket(local, cookie, headers={"Origin": "null"}),  # a sandboxed frame, a file
            await refused_socket(
                local, cookie, headers={"Origin": f"http://localhost.attacker.example:{local.port}"}
            ),
        ]
        async with ChatSocket(local, cookie, headers={"Origin": local.url}) as tab:  # the app's own page
            await tab.run_to_end("Plan the launch")
        return refused

    assert len(run_async(knock)) == 3
    log = server_log(local)
    assert f"refused a request from the page at {other}" in log and "PARLEY_ALLOWED_ORIGINS" in log


def test_another_origin_cannot_change_anything_over_http(local: Server) -> None:
    other = f"http://127.0.0.1:{free_port()}"
    tid = str(uuid.uuid4())
    with http(local) as client:
        assert client.post("/auth/header", headers={"Origin": local.url}).status_code == 200
        doors = {
            "sign in": ("POST", "/auth/header", {}),
            "sign out": ("POST", "/logout", {}),
            "log in": ("POST", "/login", {"data": {"username": "x", "password": "y"}}),
            "set the session cookie": ("POST", "/set-session-cookie", {"json": {"session_id": "x"}}),
            "rename a thread": ("PUT", "/project/thread", {"json": {"threadId": tid, "name": "x"}}),
            "delete a thread": ("DELETE", "/project/thread", {"json": {"threadId": tid}}),
            "upload a file": (
                "POST",
                "/project/file",
                {"params": {"session_id": tid}, "files": {"file": ("x.txt", b"x", "text/plain")}},
            ),
            "change an element": ("PUT", "/project/element", {"json": {}}),
            "press a button": ("POST", "/project/action", {"json": {}}),
            "list the threads": (
                "POST",
                "/project/threads",
                {"json": {"pagination": {"first": 5}, "filter": {}}},
            ),
            "read who is signed in": ("GET", "/user", {}),
        }
        for door, (method, path, kw) in doors.items():
            answer = client.request(method, path, headers={"Origin": other}, **kw)
            assert answer.status_code == 403, f"a page at {other} could {door}: {answer.status_code}"
            assert "PARLEY_ALLOWED_ORIGINS" in answer.json()["detail"]
            assert "access-control-allow-origin" not in answer.headers
        # Still signed in: the refused sign-out did nothing.
        assert client.get("/user").json()["identifier"] == "local"
        # Chainlit's CORS lets no other origin read answers (it allowed http://127.0.0.1:8000, another port).
        preflight = client.options(
            "/user", headers={"Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in preflight.headers


def test_behind_a_proxy_the_listed_origin_is_the_apps_own_and_nothing_is_local(tmp_path: Path) -> None:
    """PARLEY_ALLOWED_ORIGINS names the public origin a proxy serves the app at: pages there drive it like the
    app's own. A proxy that adds no forwarding header makes every client a loopback peer, so such a server is
    never in local mode: without a user it does not start, and with its users gone it still asks for a login."""
    refused = ProxiedServer(tmp_path / "empty", str(script(tmp_path / "empty.yaml")))
    refused.data_dir.mkdir(parents=True)
    code = _exit_before_listening(refused, "a proxied server")
    assert code != 0 and "behind a proxy (PARLEY_ALLOWED_ORIGINS is set) needs login" in refused.log_tail()

    server = ProxiedServer(tmp_path / "data", str(script(tmp_path / "script.yaml", runs=4)))
    add_users(server, alice="alice-password-1")
    server.start()
    try:
        alice = login(server, "alice", "alice-password-1")
        cookie = cookie_of(alice)

        async def from_the_public_page() -> None:
            async with ChatSocket(server, cookie, headers={"Origin": PROXY_ORIGIN}) as tab:
                await tab.run_to_end("Plan the launch")

        try:
            run_async(from_the_public_page)
            assert alice.post("/logout", headers={"Origin": PROXY_ORIGIN}).status_code == 200
        finally:
            alice.close()
        with sqlite3.connect(server.data_dir / "parley.db") as db:
            db.execute("DELETE FROM users")
        with http(server) as client:  # what any client reaching the proxy looks like: loopback, no header
            answer = client.post("/auth/header")
            assert answer.status_code == 401 and "access_token" not in answer.cookies
            assert client.get("/user").status_code == 401
    finally:
        server.stop()


# -- the local login ends with local mode ------------------------------------------------------------------

SIGN_IN = "requires login: sign in with your user"
"""What a request or a tab still carrying local mode's login is told once login is required."""


def test_a_local_login_opens_nothing_once_login_is_required(tmp_path: Path) -> None:
    """Local mode's cookie is signed, lasts days, and its secret outlives restarts: once a user exists it reads
    nobody's conversations, not even those it made, and the page can still reach the login form."""
    data = tmp_path / "data"
    server = Server(data, str(script(data / "script.yaml", runs=4))).start()
    try:
        cookie = local_cookie(server)

        async def chat() -> str:
            async with ChatSocket(server, cookie) as tab:
                await tab.run_to_end("Plan the launch")
                assert tab.thread_id is not None
                return tab.thread_id

        tid = run_async(chat)
        token = cookie.split("access_token=", 1)[1].split(";")[0]
        with http(server) as client:
            assert client.get(f"/project/thread/{tid}", headers={"Cookie": cookie}).status_code == 200
        add_users(server, alice="alice-password-1")

        def knock() -> None:
            doors = {
                "who am I": ("GET", "/user", {}),
                "list the threads": (
                    "POST",
                    "/project/threads",
                    {"json": {"pagination": {"first": 20}, "filter": {}}},
                ),
                "read the transcript": ("GET", f"/project/thread/{tid}", {}),
                "rename the thread": (
                    "PUT",
                    "/project/thread",
                    {"json": {"threadId": tid, "name": "mine now"}},
                ),
                "sign in without a password": ("POST", "/auth/header", {}),
                "trade it for a fresh cookie": ("POST", "/auth/jwt", {}),
            }
            with http(server) as client:
                for door, (method, path, kw) in doors.items():
                    for credentials in ({"Cookie": cookie}, {"Authorization": f"Bearer {token}"}):
                        answer = client.request(method, path, headers=credentials, **kw)
                        assert answer.status_code == 401, (
                            f"local mode's login could {door}: {answer.text[:200]}"
                        )
                        assert SIGN_IN in answer.json()["detail"], (door, answer.text)
                        assert "Plan the launch" not in answer.text and "reply" not in answer.text
                # The page itself still loads (to show the login form) and tells the browser to drop the cookie.
                page = client.get("/", headers={"Cookie": cookie})
                assert page.status_code == 200
                assert any(
                    h.startswith("access_token=") and "Max-Age=0" in h
                    for h in page.headers.get_list("set-cookie")
                ), page.headers
                # Signing in from that browser: the fresh login cookie is kept, not dropped with the stale one.
                signed_in = client.post(
                    "/login",
                    data={"username": "alice", "password": "alice-password-1"},
                    headers={"Cookie": cookie},
                )
                assert signed_in.status_code == 200
                fresh = [h for h in signed_in.headers.get_list("set-cookie") if h.startswith("access_token=")]
                assert fresh and all("Max-Age=0" not in h for h in fresh), fresh
            alice = login(server, "alice", "alice-password-1")  # the new user signs in as usual
            try:
                assert alice.get("/user").json()["identifier"] == "alice"
                # The first user created adopts the conversations made in local mode (`parley users add` says so).
                assert alice.get(f"/project/thread/{tid}").status_code == 200
            finally:
                alice.close()

        knock()
        server.stop()
        server.start()  # same data folder, same signing secret: the cookie is still valid as a signature
        knock()
    finally:
        server.stop()


def test_a_local_tab_runs_nothing_once_login_is_required(tmp_path: Path) -> None:
    """A tab of local mode, open or reconnecting with its session id, stops at the first user created."""
    data = tmp_path / "data"
    server = Server(data, str(script(data / "script.yaml", runs=6))).start()
    try:
        cookie = local_cookie(server)

        async def go() -> tuple[str, str, list[str], int]:
            session = str(uuid.uuid4())
            async with ChatSocket(server, cookie, session_id=session) as tab:  # disconnected at the end
                await tab.run_to_end("Plan the launch")
                tid = tab.thread_id
            async with ChatSocket(server, cookie) as still_open:
                await still_open.run_to_end("Plan the party")
                runs = still_open.runs_ended()
                await asyncio.to_thread(add_users, server, alice="alice-password-1")
                # Reconnecting with the old cookie and session id: Chainlit would restore the session.
                reconnect = await refused_socket(
                    server, cookie, session_id=session, thread_id=tid, wait_started=False
                )
                await still_open.say("Plan the afterparty")
                told = await still_open.note(SIGN_IN)
                # the server closed the tab's socket
                await asyncio.wait_for(still_open.dropped.wait(), WAIT_S)
                return reconnect, told, still_open.texts(), runs - still_open.runs_ended()

        reconnect, told, texts, more_runs = run_async(go)
        assert SIGN_IN in reconnect
        assert SIGN_IN in told
        assert more_runs == 0 and not any("reply 3" in t for t in texts), texts  # the team did not run again
        assert "Traceback" not in server_log(server)
    finally:
        server.stop()


def test_a_loopback_login_is_nothing_on_every_interface(tmp_path: Path) -> None:
    """A cookie local mode handed out while the data folder was served on 127.0.0.1 (same signing secret) is no
    login when it is served on every interface, even should its users be gone."""
    data = tmp_path / "data"
    chat_script = script(tmp_path / "script.yaml")
    on_loopback = ChainlitRun(data, chat_script, "127.0.0.1").start()
    try:
        cookie = local_cookie(on_loopback)
    finally:
        on_loopback.stop()
    everywhere = ChainlitRun(data, chat_script, "0.0.0.0")
    add_users(everywhere, alice="alice-password-1")
    everywhere.start()
    try:
        with sqlite3.connect(data / "parley.db") as db:
            db.execute("DELETE FROM users")
        with http(everywhere) as client:
            answer = client.get("/user", headers={"Cookie": cookie})
            assert answer.status_code == 401 and SIGN_IN in answer.json()["detail"], answer.text
        assert SIGN_IN in run_async(lambda: refused_socket(everywhere, cookie))
    finally:
        everywhere.stop()
