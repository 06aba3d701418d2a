"""Files a tool writes are shown or downloaded, never run as a page of the app (issue 13, hole 4), and every
page carries a content security policy the chat still works under. In Debian's Chromium.

A tool (a team's own, from PARLEY_TOOLS) writes a small and a large web page with a script in it, and a large
text file; the team's message carries them. Whatever way the user opens them, no script of theirs runs with the
app's origin: the large page (served by the app) is a download, the small one (inside the message) has no
type a browser renders.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from chat_started import ChatStarts, evaluate, send_message
from ui.conftest import Server, browser_missing

if browser_missing():
    pytest.skip(browser_missing() or "", allow_module_level=True)
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

expect.set_options(timeout=30_000)  # a whole scripted run fits; the default 5 s is tight on a busy machine
PWNED = "window.__pwned"
PAGE = f"<!doctype html><html><body><h1>Quarterly report</h1><script>{PWNED} = 'the tool page ran';</script>"
TOOL = f'''
from parley.tools import current_context, tool

PAGE = {PAGE!r}


@tool(family="pages")
def make_pages() -> str:
    """Write the report as web pages and as text."""
    ws = current_context().workspace
    (ws / "small.html").write_text(PAGE + "</body></html>", encoding="utf-8")
    (ws / "big.html").write_text(PAGE + "<!--" + "x" * 3_000_000 + "--></body></html>", encoding="utf-8")
    (ws / "big.txt").write_text("a line of the report\\n" * 150_000, encoding="utf-8")
    return "Wrote small.html, big.html and big.txt"
'''
TEAM = """
name: page-maker
description: Writes its report as web pages (a test team)
pattern: round_robin
roles:
  - name: maker
    description: Writes the report
    prompt: You write reports as web pages.
    tools: [make_pages]
termination:
  max_turns: 2
  stop_text: DONE
"""
SCRIPT = {"roles": {"maker": [{"tool": "make_pages", "args": {}}, "The report is written. DONE"]}}


class PagesServer(Server):
    """`parley ui` whose default team has a tool that writes web pages."""

    def __init__(self, root: Path) -> None:
        for folder, name, text in (
            ("tools", "pages.py", TOOL),
            ("teams", "page-maker.yaml", TEAM),
            ("scripts", "pages.yaml", json.dumps(SCRIPT)),
        ):
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / name).write_text(text, encoding="utf-8")
        super().__init__(root / "data", str(root / "scripts" / "pages.yaml"))
        self.root = root

    def env(self) -> dict[str, str]:
        return super().env() | {
            "PARLEY_TOOLS": str(self.root / "tools"),
            "PARLEY_TEAMS": str(self.root / "teams"),
            "PARLEY_DEFAULT_TEAM": "page-maker",
        }


def _file_link(page: Page, name: str) -> str:
    link = page.locator(f'a:has-text("{name}")').first
    expect(link).to_be_attached()
    href = link.get_attribute("href")
    assert href, f"the message's {name} has no link"
    return href


def _absolute(server: Server, href: str) -> str:
    return href if href.startswith("http") else server.url + href


def test_tool_files_never_run_as_the_app(new_page: Callable[[], Page], tmp_path: Path) -> None:
    server = PagesServer(tmp_path).start()
    try:
        _check(new_page, server)
    finally:
        server.stop()


def _check(new_page: Callable[[], Page], server: Server) -> None:
    page = new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    starts = ChatStarts(page)
    first = page.goto(server.url + "/")
    assert first is not None
    policy = first.headers["content-security-policy"]
    assert (
        "script-src 'self'" in policy
        and "img-src 'self' data: blob:" in policy
        and "unsafe-inline" not in policy
    )
    starts.wait()  # the chat started under the policy
    send_message(page, "Write the quarterly report")
    expect(
        page.locator('.step[data-step-type="assistant_message"]').filter(has_text="Run ended")
    ).to_be_visible()

    # The small page travels inside the message: as bytes of no renderable type, whatever the link does.
    small = _file_link(page, "small.html")
    assert small.startswith("data:application/octet-stream;base64,"), small[:60]

    # The large page is served by the app: a download, with a policy that would run nothing anyway.
    big = _file_link(page, "big.html")
    assert big.startswith("/project/file/") or big.startswith(server.url + "/project/file/"), big[:80]
    url = _absolute(server, big)
    answer = page.request.get(url)
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-disposition"] == "attachment; filename*=UTF-8''big.html"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in answer.headers["content-security-policy"]
    opened = page.context.new_page()  # the user opens the link in a tab of its own (or is sent it)
    with opened.expect_download() as download:
        try:
            opened.goto(url)
        except PlaywrightError as exc:
            assert "Download is starting" in str(exc) or "ERR_ABORTED" in str(exc), exc
    assert download.value.suggested_filename == "big.html"
    assert evaluate(opened, f"() => {PWNED}") is None and evaluate(page, f"() => {PWNED}") is None

    # Plain text is shown, as text.
    text = page.request.get(_absolute(server, _file_link(page, "big.txt")))
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert (
        text.headers["content-disposition"] == "inline"
        and text.headers["x-content-type-options"] == "nosniff"
    )

    # Chainlit's own inline scripts are allowed by hash: the page ran with nothing refused.
    page.reload()
    starts.wait()
    assert refused == [], refused
