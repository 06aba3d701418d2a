"""Chainlit's own stop (its stop button sends the socket event `stop`) stops the run as parley's Stop command does.

A real `parley ui` and Chainlit's socket spoken to with python-socketio, as a page does: a task is sent, the
first role starts streaming a slow reply, then the tab sends `stop`. Before the fix Chainlit posted
"Task manually stopped." while the team went on for several more turns.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from pathlib import Path
from typing import Any

from security._websec import WAIT_S, ChatSocket, local_cookie, server_log
from ui.conftest import Server, run_async

ROLES = ("researcher", "writer", "editor")
REPLY = "Findings so far: " + " ".join(f"point{i}" for i in range(200))
"""Long enough to stream in many pieces over the script's delay: the stop lands in the middle of it."""


def slow_script(path: Path) -> Path:
    """content-studio on a model that takes 20 s a reply, streamed: a run that is not stopped lasts a minute."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"roles": {r: [f"{REPLY} ({r} {i})" for i in range(1, 5)] for r in ROLES}, "delay_s": 20}),
        encoding="utf-8",
    )
    return path


class Tab(ChatSocket):
    async def stop_button(self) -> None:
        """What Chainlit's stop button sends."""
        await self._sio.emit("stop")

    async def command(self, name: str) -> None:
        """A composer command sent with no text, as the Stop button of parley's composer does."""
        message = {
            "id": str(uuid.uuid4()),
            "threadId": self.thread_id or "",
            "type": "user_message",
            "name": "user",
            "output": "",
            "command": name,
            "createdAt": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        await self._sio.emit("client_message", {"message": message, "fileReferences": None})

    def streamed(self) -> bool:
        return any(
            event in ("stream_start", "stream_token") and "point" in str(data)
            for event, data in self.received
        )


def stopped_run(server: Server, cookie: str, task: str, how: str) -> tuple[str, list[str], str]:
    """Send `task`, stop the run once the first reply streams (`how`: "button" or "command"); return the
    thread id, every text the tab was shown, and the run's closing note."""

    async def go() -> tuple[str, list[str], str]:
        tab = Tab(server, cookie)
        async with tab:
            await tab.say(task)
            await tab.wait_for(tab.streamed, "the first reply to start streaming")
            await (tab.stop_button() if how == "button" else tab.command("Stop"))
            ended = await tab.note("**Run ended**")
            assert tab.thread_id is not None
            return tab.thread_id, tab.texts(), ended

    return run_async(go)


def run_events(server: Server, tid: str) -> list[dict[str, Any]]:
    """The thread's stored events once the run's result is among them (the store writes behind the run)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        events = server.events(tid)
        if any(e["type"] == "result" for e in events):
            return events
        assert time.monotonic() < deadline, (
            f"no result stored after {WAIT_S:g} s: {[e['type'] for e in events]}"
        )
        time.sleep(0.2)


def test_chainlits_stop_button_stops_the_run_as_the_stop_command_does(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data, str(slow_script(data / "script.yaml"))).start()
    try:
        cookie = local_cookie(server)
        tid, texts, ended = stopped_run(server, cookie, "Plan the launch", "button")
        assert "Stopped by you" in ended, ended
        assert "Task manually stopped." in texts  # Chainlit's own words, and now true
        assert not any(f"({role} 1)" in t for t in texts for role in ROLES), texts  # no reply was finished
        by_button = run_events(server, tid)
        (result,) = [e for e in by_button if e["type"] == "result"]
        assert result["stop_reason"] == "stopped"
        assert [e for e in by_button if e["type"] == "message"] == []  # the team made no further turn
        assert {e.get("source") for e in by_button if e["type"] == "usage"} <= {"researcher"}

        # parley's own Stop command, on the same kind of run: the same events, in the same order.
        tid2, _, ended2 = stopped_run(server, cookie, "Plan the party", "command")
        by_command = run_events(server, tid2)
        assert "Stopped by you" in ended2, ended2
        assert [e["type"] for e in by_button] == [e["type"] for e in by_command]
        assert "Traceback" not in server_log(server)
    finally:
        server.stop()
