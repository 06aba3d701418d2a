"""Reopened threads in a real browser: what a run showed comes back after a reload, a server restart, and through
a link opened in a fresh browser (through the login page when there is one).

Chromium drives `parley ui` with a small team (in a folder of its own) whose scripted roles draw a chart
(make_chart), make a deck of it (make_slides) and approve it. Screenshots, light and dark, go to
$PARLEY_UI_SHOTS (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_chat_browser import Chat, expect, result_of
from ui.conftest import Server

TEAM = """\
name: sales-deck
description: Draws the quarter's chart and makes a deck of it.
pattern: round_robin
roles:
  - name: analyst
    description: draws charts
    prompt: You draw charts.
    tools: [make_chart]
  - name: presenter
    description: makes decks
    prompt: You make decks.
    tools: [make_slides]
  - name: reviewer
    description: reviews the deck
    prompt: You review decks.
termination:
  max_turns: 6
  stop_text: APPROVE
  stop_from: [reviewer]
"""
SCRIPT = """\
roles:
  analyst:
    - tool: make_chart
      args: {kind: bar, title: "Q3 revenue by region", labels: [EMEA, Americas, APAC],
             values: [85383.28, 70210.5, 42011.9], filename: q3.png}
    - "Chart drawn: EMEA leads with 43%."
  presenter:
    - tool: make_slides
      args: {title: "Q3 review", filename: q3.pptx,
             slides: [{headline: "EMEA leads Q3", bullets: ["EMEA: 85,383.28"], chart: "charts/q3.png"}]}
    - "Deck ready."
  reviewer:
    - "Figures match. APPROVE"
delay_s: 0.2
"""
CHART = "charts_q3.png"
DECK = "decks_q3.pptx"
USAGE = "tokens-per-speaker.svg"
METER = re.compile(r"^Meter · [\d,]+ tokens")


class DeckServer(Server):
    """`parley ui` with the sales-deck team as the default."""

    def __init__(self, data_dir: Path, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "teams").mkdir(exist_ok=True)
        (folder / "teams" / "sales-deck.yaml").write_text(TEAM, encoding="utf-8")
        (folder / "script.yaml").write_text(SCRIPT, encoding="utf-8")
        super().__init__(data_dir, str(folder / "script.yaml"))
        self.teams = folder / "teams"

    def env(self) -> dict[str, str]:
        return super().env() | {"PARLEY_TEAMS": str(self.teams), "PARLEY_DEFAULT_TEAM": "sales-deck"}


@pytest.fixture
def deck_server(tmp_path: Path) -> Iterator[DeckServer]:
    server = DeckServer(tmp_path / "data", tmp_path / "team")
    try:
        yield server
    finally:
        server.stop()


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PARLEY_UI_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def theme(chat: Chat, which: str) -> None:
    """Pick the theme as a person does: the header's theme menu."""
    chat.page.locator("#theme-toggle").click()
    chat.page.get_by_role("menuitem", name=which.capitalize()).click()
    expect(chat.page.locator("html")).to_have_class(re.compile(rf"\b{which}\b"))
    chat.page.keyboard.press("Escape")
    expect(chat.page.get_by_role("menu")).to_have_count(0)


def make_the_deck(chat: Chat) -> str:
    chat.send("Make the Q3 deck")
    expect(chat.note("Run ended")).to_contain_text("reviewer said APPROVE")
    return chat.thread_id()


def shows_what_the_run_showed(chat: Chat, server: Server, tid: str) -> None:
    """The chart as a picture, the deck as a download of the very file, the usage chart, and the meter."""
    page = chat.page
    expect(chat.agent("reviewer", 3)).to_contain_text("Figures match")
    for name in (CHART, USAGE):
        picture = page.locator(f'img[alt="{name}"]')
        expect(picture).to_have_count(1)
        picture.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    expect(chat.note("Run ended").locator(f'img[alt="{USAGE}"]')).to_have_count(1)  # under its note
    with page.expect_download() as got:
        page.get_by_text(DECK, exact=True).click()
    deck = server.data_dir / "workspaces" / tid / "decks" / "q3.pptx"
    assert Path(got.value.path()).read_bytes() == deck.read_bytes()
    # The meter in the side panel, titled with the run's totals, which the closing line gives too.
    result = result_of(server, tid)
    total = result["prompt_tokens"] + result["completion_tokens"]
    expect(page.locator("#side-view-title")).to_have_text(re.compile(rf"^Meter · {total:,} tokens"))
    content = page.locator("#side-view-content")
    expect(content).to_contain_text("last run")
    expect(content).to_contain_text(f"{result['prompt_tokens']:,} prompt + {result['completion_tokens']:,}")


def test_a_reloaded_or_restarted_thread_shows_its_pictures_downloads_chart_and_meter(
    deck_server: DeckServer, new_page, tmp_path: Path
) -> None:
    server = deck_server.start()
    chat = Chat(new_page(), server).open()
    expect(chat.page.locator("#side-view-title")).to_have_count(0)  # nothing to meter yet
    tid = make_the_deck(chat)
    shows_what_the_run_showed(chat, server, tid)  # live
    closing = chat.note("Run ended").inner_text()

    chat.reload()
    shows_what_the_run_showed(chat, server, tid)
    expect(chat.note("Run ended")).to_have_text(closing)  # the same words as live
    folder = shots(tmp_path)
    for variant in ("light", "dark"):
        theme(chat, variant)
        chat.note("Run ended").scroll_into_view_if_needed()
        chat.page.screenshot(path=str(folder / f"history-reopened-{variant}.png"))
        chat.page.locator(f'img[alt="{CHART}"]').scroll_into_view_if_needed()
        chat.page.screenshot(path=str(folder / f"history-reopened-chart-{variant}.png"))

    # A link to the thread, opened in a fresh browser (local mode: signed in by header on the way).
    linked = Chat(new_page(), server)
    linked.page.goto(f"{server.url}/thread/{tid}")
    shows_what_the_run_showed(linked, server, tid)
    assert linked.page.url.endswith(f"/thread/{tid}")

    linked.page.context.close()
    chat.page.context.close()  # the browser is gone ...
    server.stop()
    server.start()  # ... and so is the server: it starts again on the same port and data folder
    fresh = Chat(new_page(), server).open()
    fresh.page.locator(f"#thread-{tid} a").click()  # reopened from the sidebar
    fresh.page.wait_for_url(f"**/thread/{tid}")
    shows_what_the_run_showed(fresh, server, tid)


def test_a_thread_link_goes_through_the_login_page_to_the_thread(deck_server: DeckServer, new_page) -> None:
    deck_server.parley("users", "add", "alice", "--password-stdin", stdin="alice-password-1\n")
    server = deck_server.start()
    tid = make_the_deck(Chat(new_page(), server).login("alice", "alice-password-1"))

    fresh = Chat(new_page(), server)
    fresh.page.goto(f"{server.url}/thread/{tid}")
    fresh.page.wait_for_url("**/login")
    fresh.page.locator("#email").fill("alice")
    fresh.page.locator("#password").fill("alice-password-1")
    fresh.page.locator('button[type="submit"]').click()
    fresh.page.wait_for_url(f"**/thread/{tid}")
    shows_what_the_run_showed(fresh, server, tid)
