"""Hostile messages in the web chat: from a browser (HTML, scripts, Markdown images) and from a client
that speaks to the socket directly (NUL, control characters, lone surrogates, a megabyte, too much).

The page shows such text as text and runs none of it; no image link makes the server, or the
reader's browser, fetch an internal address; the store keeps what was sent, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _websec import TEAM, ChatSocket, local_cookie, script
from chat_started import ChatStarts, evaluate, send_message
from fakeserver import FakeServer
from ui.conftest import Server, run_async

PWNED = "window.__pwned"
NUL_AND_CONTROLS = "Plan \x00 the \x07 launch \x1b[31m red \x7f \u202e evil \u2028 done"
MEGABYTE = ("Summarise: " + "churn 漢字 données " * 55_189)[
    :1_048_575
] + "!"  # 1 MiB characters, ~1.4 MB of UTF-8
INTERJECTION = '<img src=x onerror="alert(1)"> and ![x](http://127.0.0.1:9/secret)'
TOO_MUCH = "x" * (5 * 1024 * 1024)  # past the web chat's 4 MiB message limit


@pytest.fixture
def listener() -> Iterator[FakeServer]:
    """An internal address: a loopback HTTP server recording every request it gets."""
    fake = FakeServer().start()
    yield fake
    fake.stop()


def _hostile(url: str, who: str) -> str:
    """HTML, script and Markdown, a paragraph each (a paragraph opening with HTML is read as raw HTML)."""
    return (
        f"<script>{PWNED}='{who}-script'</script><img src=x onerror=\"{PWNED}='{who}-img'\">\n\n"
        f'<iframe src="{url}/{who}-iframe"></iframe>\n\n'
        f"The chart: ![chart]({url}/{who}-image?leak=1)\n\n"
        f"See [details](javascript:{PWNED}='{who}-link') and <b onmouseover=\"{PWNED}='{who}-hover'\">bold</b>"
    )


# -- in the browser -----------------------------------------------------------------------------------------


def _nothing_ran(page: Any) -> None:
    assert evaluate(page, f"() => {PWNED}") is None
    injected = evaluate(
        page,
        """() => ({
        handlers: document.querySelectorAll('[onerror], [onload], [onmouseover]').length,
        frames: document.querySelectorAll('iframe').length,
        scripts: [...document.scripts].filter(s => s.textContent.includes('__pwned')).length,
        js_links: document.querySelectorAll('a[href^="javascript:"]').length,
        bold: document.querySelectorAll('.step b').length,
    })""",
    )
    assert injected == {"handlers": 0, "frames": 0, "scripts": 0, "js_links": 0, "bold": 0}


def test_html_and_scripts_show_as_text_and_images_stay_unfetched(
    own_server, new_page, listener: FakeServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    agent_says = _hostile(listener.url, "agent")
    server = own_server(str(script(tmp_path / "script.yaml", say={"researcher": agent_says})))
    server.start()
    page = new_page()
    dialogs: list[str] = []
    tried: list[str] = []
    failed: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: tried.append(r.url) if r.url.startswith(listener.url) else None)
    page.on(
        "requestfailed",
        lambda r: failed.append(f"{r.url} {r.failure}") if r.url.startswith(listener.url) else None,
    )

    starts = ChatStarts(page)
    first = page.goto(server.url + "/")
    assert first is not None and "img-src 'self' data: blob:" in first.headers["content-security-policy"]
    starts.wait()
    task = _hostile(listener.url, "user")
    send_message(page, task)
    expect(
        page.locator('.step[data-step-type="assistant_message"]').filter(has_text="Run ended")
    ).to_be_visible()

    def check() -> None:
        mine = page.locator('.step[data-step-type="user_message"]').first
        expect(mine).to_contain_text(f"<script>{PWNED}='user-script'</script>")  # shown as typed
        expect(mine).to_contain_text('<img src=x onerror="')
        researcher = page.locator('.step[data-step-type="assistant_message"]').filter(
            has_text="researcher · turn 1"
        )
        expect(researcher).to_contain_text(f"<script>{PWNED}='agent-script'</script>")
        # Chainlit renders an agent's Markdown images as <img>, and the page's policy blocks the fetch. What you
        # type shows as typed (no Markdown: it would eat model names), so your image stays text.
        expect(researcher.locator(f'img[src^="{listener.url}/agent-image"]')).to_have_count(1)
        expect(mine).to_contain_text(f"![chart]({listener.url}/user-image?leak=1)")
        expect(mine.locator("img")).to_have_count(0)
        expect(researcher.get_by_role("link", name="details")).to_have_attribute(
            "href", ""
        )  # javascript: dropped
        _nothing_ran(page)

    check()
    page.reload()  # the conversation as read back from the store
    page.locator('.step[data-step-type="assistant_message"]').filter(has_text="Run ended").wait_for()
    check()

    assert dialogs == []
    assert listener.requests == [], (
        "something fetched the internal address"
    )  # not the server, not the browser
    assert {url.split("?")[0] for url in tried} == {f"{listener.url}/agent-image"}
    assert len(failed) == len(tried) and all(f.endswith(" csp") for f in failed), (
        failed
    )  # refused by the policy


# -- over the socket ----------------------------------------------------------------------------------------


class StoreServer(Server):
    """A `parley ui` on the given database (PostgreSQL too)."""

    def __init__(self, data_dir: Path, script_path: Path, database: str) -> None:
        super().__init__(data_dir, str(script_path))
        self.database = database

    @property
    def db_url(self) -> str:
        return self.database

    def env(self) -> dict[str, str]:
        return super().env() | {"PARLEY_DATABASE_URL": self.database}


def _stored_texts(server: Server, tid: str, mode: str | None = None) -> list[str]:
    return [
        e["content"]
        for e in server.events(tid)
        if e["type"] == "human_message" and (mode is None or e["mode"] == mode)
    ]


def test_hostile_messages_over_the_socket(db_url: str, tmp_path: Path) -> None:
    server = StoreServer(tmp_path / "data", script(tmp_path / "script.yaml", delay_s=0.2), db_url).start()
    try:
        run_async(lambda: _talk(server))
    finally:
        server.stop()


async def _talk(server: Server) -> None:
    cookie = local_cookie(server)
    async with ChatSocket(server, cookie) as tab:
        # NUL and control characters: the first message, so also the thread's title.
        await tab.run_to_end(NUL_AND_CONTROLS)
        tid = tab.thread_id
        assert tid is not None
        (row,) = [t for t in server.threads("local") if t.id == tid]
        assert row.title == "Plan the launch [31m red evil done"  # one printable line
        assert row.team == TEAM

        # Half a UTF-16 pair: refused with a reason, stored nowhere.
        await tab.say("broken \ud800 text")
        assert "not valid text: a lone surrogate (U+D800) at character 8" in await tab.note("Not sent")
        await tab.say(" \n\t ")
        await tab.note("Type a message first")

        # HTML interjected while the agents are writing.
        started, seen = tab.runs_ended(), len(tab.received)
        await tab.say("And the Q4 numbers")
        await tab.wait_for(
            lambda: any(e == "stream_start" for e, _ in tab.received[seen:]), "an agent to write"
        )
        await tab.say(INTERJECTION)
        await tab.wait_for(lambda: tab.runs_ended() > started, "the run to end")
        await tab.note("your message joined the conversation")

        # A megabyte: it reaches the team, which stops at its token budget and says so.
        await tab.run_to_end(MEGABYTE)
        assert "token budget" in [t for t in tab.texts() if t.startswith("**Run ended**")][-1]

    results = [e for e in server.events(tid) if e["type"] == "result"]
    assert [r["stop_reason"] for r in results] == ["stop_text", "stop_text", "max_tokens"]
    assert _stored_texts(server, tid, "task") == [NUL_AND_CONTROLS, "And the Q4 numbers", MEGABYTE]
    assert _stored_texts(server, tid, "say") == [INTERJECTION]
    assert not any("broken" in json.dumps(e) for e in server.events(tid))  # the refused message
    seqs = [e["seq"] for e in server.events(tid)]
    assert seqs == list(range(1, len(seqs) + 1))

    # Too much in one message: Engine.IO closes that one connection; the server and the thread carry on.
    async with ChatSocket(server, cookie, thread_id=tid) as again:
        await again.say(TOO_MUCH)
        await again.wait_for(again.dropped.is_set, "the server to close the connection")
    async with ChatSocket(server, cookie, thread_id=tid) as reopened:
        thread = await reopened.wait_for(
            lambda: next((d for e, d in reopened.received if e == "resume_thread"), None),
            "the thread to reopen",
        )
        shown = "\n".join(str(step.get("output", "")) for step in thread["steps"])
        assert (
            NUL_AND_CONTROLS in shown and "**researcher** · turn 1" in shown and TOO_MUCH[:100] not in shown
        )
        await reopened.run_to_end("One more, briefly")
    assert _stored_texts(server, tid, "task")[-1] == "One more, briefly"
    assert not any(TOO_MUCH[:100] in str(e) for e in server.events(tid))
