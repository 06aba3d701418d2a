"""A running MCP tool in a real browser: its progress and log lines inside its step, and a picture it answers.

Chromium drives `parley ui` with a team whose one role calls tools of a real MCP server (FastMCP over stdio,
tests/ui/mcp/crawler.py) on a scripted model. The crawl waits, after reporting its first page, until the test
has looked at the page (it creates a file), so what is seen mid-call does not depend on timing.
Set PARLEY_UI_SHOTS=/some/folder to keep the screenshots.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from test_chat_browser import Chat, expect, of_type, result_of
from ui.conftest import Server

CRAWLER = Path(__file__).resolve().parent / "mcp" / "crawler.py"


class CrawlServer(Server):
    """`parley ui` with the web-desk team (in a folder of its own) as the default."""

    def __init__(self, data_dir: Path, script: str, teams: Path) -> None:
        super().__init__(data_dir, script)
        self.teams = teams

    def env(self) -> dict[str, str]:
        return super().env() | {"PARLEY_TEAMS": str(self.teams), "PARLEY_DEFAULT_TEAM": "web-desk"}


def web_desk(folder: Path, go_on: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "web-desk.yaml").write_text(
        f"""\
name: web-desk
description: Crawls a site and shows what it found.
pattern: round_robin
roles:
  - name: crawler
    description: crawls sites
    prompt: You crawl sites.
    tools: [site.*]
termination:
  max_turns: 2
mcp:
  - name: site
    command: {sys.executable}
    args: ["{CRAWLER}"]
    env: {{CRAWLER_GO_ON: "{go_on}"}}
""",
        encoding="utf-8",
    )
    script = folder / "script.yaml"
    script.write_text(
        "roles:\n  crawler:\n    - {tool: site__crawl, args: {pages: 3}}\n    - {tool: site__screenshot}\n",
        encoding="utf-8",
    )
    return script


def test_a_running_tool_shows_its_progress_and_log_and_its_picture(new_page, tmp_path):
    go_on = tmp_path / "go-on"
    script = web_desk(tmp_path / "teams", go_on)
    server = CrawlServer(tmp_path / "data", str(script), tmp_path / "teams").start()
    try:
        chat = Chat(new_page(), server).open()
        chat.send("Crawl example.org")
        step = chat.page.locator(".step").filter(has_text="Used site__crawl")
        expect(step.first).to_be_visible()
        step.first.get_by_role("button", name="Used site__crawl").click()  # open the step
        expect(step.first).to_contain_text("Working: 1/3 · page 1: /pricing")
        expect(step.first).to_contain_text("warning: robots.txt disallows /private")
        shots = Path(os.environ.get("PARLEY_UI_SHOTS") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        chat.page.screenshot(path=str(shots / "tool-progress.png"))
        go_on.touch()
        expect(step.first).to_contain_text("crawled 3 pages")
        expect(step.first).to_contain_text("warning: robots.txt disallows /private")  # the log stays
        expect(step.first).not_to_contain_text("Working:")

        expect(chat.note("Run ended")).to_be_visible()
        picture = chat.page.locator('img[alt$=".png"]').first
        expect(picture).to_be_visible()
        # Decoded: a picture, not a download or a code block. Read in the page, found again at each try: the
        # page may draw the message again (and the picture with it) as the run's last events arrive.
        size = chat.page.wait_for_function(
            """() => {
              const img = document.querySelector('img[alt$=".png"]');
              if (!img) return null;
              img.scrollIntoView({block: 'center'});
              return img.complete && img.naturalWidth ? [img.naturalWidth, img.naturalHeight] : null;
            }""",
            timeout=20_000,
        ).json_value()
        assert size == [160, 100], size
        chat.page.screenshot(path=str(shots / "tool-picture.png"))
        tid = chat.thread_id()
        result_of(server, tid)
        assert [e["mime"] for e in of_type(server.events(tid), "file")] == ["image/png"]
    finally:
        server.stop()
