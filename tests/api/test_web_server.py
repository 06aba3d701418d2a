"""The API served by `parley ui` itself, next to the web chat: its routes answer ahead of Chainlit's page, through
the web chat's guard, with the same store (a token made by `parley tokens create` works there, and a conversation
made over the API is the user's in the web chat's history)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from parley.store import Store

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 60.0
SAFETY_S = 30.0
SCRUB = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "OLLAMA_HOST",
    "PARLEY_MODEL",
    "PARLEY_TEAMS",
    "PARLEY_ALLOWED_ORIGINS",
)


def parley_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("parley")
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "parley.cli", *args]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Ui:
    def __init__(self, data: Path, scripts: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in SCRUB} | {
            "PARLEY_DATA_DIR": str(data),
            "PARLEY_SCRIPTS": str(scripts),
            "PARLEY_AUTOGEN_LOG": "CRITICAL",
            "PYTHONUNBUFFERED": "1",
        }
        self.log = data / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def parley(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            parley_command(*args),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=self.env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"parley {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                parley_command("ui", "--host", "127.0.0.1", "--port", str(self.port)),
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_S
        while True:  # the server's port opens once it is ready: poll it, for at most STARTUP_S
            assert self.proc.poll() is None, (
                f"parley ui exited:\n{self.log.read_text(errors='replace')[-3000:]}"
            )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, (
                f"parley ui did not start:\n{self.log.read_text(errors='replace')[-3000:]}"
            )
            time.sleep(0.2)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        (ROOT / ".files").mkdir(exist_ok=True)  # Chainlit deletes it on shutdown; other servers may use it


@pytest.fixture
def ui(scripts: Path, tmp_path: Path) -> Iterator[Ui]:
    server = Ui(tmp_path / "data", scripts)
    (tmp_path / "data").mkdir()
    try:
        yield server
    finally:
        server.stop()


def test_the_web_chats_server_serves_the_api_with_a_token_from_the_cli(ui: Ui, scripts: Path) -> None:
    secret = ui.parley("tokens", "create", "local", "--label", "test").stdout.strip()
    ui.start()
    with httpx.Client(base_url=ui.url, timeout=SAFETY_S) as client:
        r = client.get("/api/v1/teams")
        assert r.status_code == 401 and r.headers["content-type"] == "application/json"
        auth = {"authorization": f"Bearer {secret}"}
        teams = client.get("/api/v1/teams", headers=auth)
        assert teams.status_code == 200, teams.text
        assert "content-studio" in {t["name"] for t in teams.json()}
        assert client.get("/api/v1/openapi.json").json()["info"]["title"] == "parley API"
        models = client.get("/v1/models", headers=auth).json()
        assert "content-studio" in {m["id"] for m in models["data"]}
        created = client.post(
            "/api/v1/conversations",
            json={
                "team": "customer-support",
                "model": "scripted:refund.yaml",
                "message": "Order 1042 arrived broken",
            },
            headers=auth,
        )
        assert created.status_code == 201, created.text
        tid = created.json()["id"]
        with client.stream("GET", f"/api/v1/conversations/{tid}/events", headers=auth) as live:
            for line in live.iter_lines():
                if line.startswith("data:") and '"type":"approval_request"' in line:
                    break
        assert client.get("/", headers={"accept": "text/html"}).status_code == 200, (
            "the web chat's page still answers"
        )

    async def owner() -> str | None:
        async with await Store.open(
            f"sqlite+aiosqlite:///{Path(ui.env['PARLEY_DATA_DIR']) / 'parley.db'}"
        ) as store:
            row = await store.get_thread(tid)
            return row.owner if row else None

    assert asyncio.run(owner()) == "local"
    # The conversation above ran on uvloop, with asyncio's C tasks back in place of nest_asyncio's (_chainlit_loop.py).
    assert "parley web chat: event loop uvloop, asyncio's tasks in C" in ui.log.read_text(errors="replace")


def test_on_a_server_with_users_each_token_sees_its_own_and_the_openai_sdk_talks_to_a_team(ui: Ui) -> None:
    local = ui.parley("tokens", "create", "local").stdout.strip()
    for name in ("alice", "bob"):
        done = subprocess.run(
            parley_command("users", "add", name, "--password-stdin"),
            input=f"{name}-password\n",
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=ui.env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    tokens = {name: ui.parley("tokens", "create", name).stdout.strip() for name in ("alice", "bob")}
    ui.start()
    sdk = OpenAI(base_url=f"{ui.url}/v1", api_key=tokens["alice"], max_retries=0, timeout=SAFETY_S)
    reply = sdk.chat.completions.create(
        model="customer-support@scripted:refund.yaml",
        messages=[{"role": "user", "content": "Order 1042 arrived broken"}],
    )
    assert (reply.choices[0].message.content or "").endswith("RESOLVED") and reply.usage is not None
    tid = (reply.model_extra or {})["parley"]["conversation"]
    speakers = []
    for chunk in sdk.chat.completions.create(
        model="customer-support@scripted:refund.yaml",
        messages=[{"role": "user", "content": "Order 1042 arrived broken"}],
        stream=True,
    ):
        name = (chunk.choices[0].delta.model_extra or {}).get("name") if chunk.choices else None
        if name:
            speakers.append(name)
    assert speakers[0] == "triage" and "billing" in speakers
    sdk.close()
    with httpx.Client(base_url=ui.url, timeout=SAFETY_S) as client:
        bob = {"authorization": f"Bearer {tokens['bob']}"}
        r = client.get(f"/api/v1/conversations/{tid}", headers=bob)
        assert r.status_code == 403 and "not yours" in r.json()["detail"]
        assert client.get("/api/v1/conversations", headers=bob).json() == []
        r = client.get("/api/v1/teams", headers={"authorization": f"Bearer {local}"})
        assert r.status_code == 401 and "single-user mode" in r.json()["detail"]
        r = client.get(
            "/api/v1/teams",
            headers={"authorization": f"Bearer {tokens['alice']}", "origin": "https://evil.example"},
        )
        assert r.status_code == 403, "a page of another site is refused by the web chat's guard"
