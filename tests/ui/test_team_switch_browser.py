"""Switching teams in a real browser: every new chat's start reaches the page, the model picker included.

Chainlit's page replaces its connection at once on a team switch; the new chat's start (chat settings, commands,
notes) went to the connection it dropped, about one switch in three on a loaded machine, and the page showed no
model picker. The server now sends a taken-over session's start again (parley/web/_chainlit_restore.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chat_started import ChatStarts

try:
    from playwright.sync_api import Page, expect
except ImportError:
    pytest.skip("Python Playwright is not installed in this environment", allow_module_level=True)

MODEL_SCRIPTS = Path(__file__).resolve().parent / "model_scripts"
AGENT_STEP = '.step[data-step-type="assistant_message"]'
# The model each team starts on, as the picker names it: studio.yaml fits content-studio and editorial-desk;
# customer-support falls back to the script of PARLEY_SCRIPTS that fits it, and says so in a note.
MODELS = {
    "content-studio": "This server's model · studio.yaml",
    "editorial-desk": "This server's model · studio.yaml",
    "customer-support": "Script · support-brief.yaml",
}
SWITCHES = ["editorial-desk", "customer-support", "content-studio"] * 3


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The web chat on studio.yaml, with scripts that fit the other teams (no Ollama: a port nobody listens on)."""
    here = str(Path(__file__).with_name("conftest.py"))
    conf = next(p for p in request.config.pluginmanager.get_plugins() if getattr(p, "__file__", "") == here)
    if conf.browser_missing():
        pytest.skip(conf.browser_missing())
    srv = conf.Server(tmp_path_factory.mktemp("data-switch"), "studio.yaml")
    base_env = srv.env
    extra = {"PARLEY_SCRIPTS": str(MODEL_SCRIPTS), "OLLAMA_HOST": f"http://127.0.0.1:{conf.free_port()}"}
    srv.env = lambda: base_env() | extra
    try:
        yield srv.start()
    finally:
        srv.stop()


def shows_its_start(page: Page, starts: ChatStarts, team: str) -> None:
    """The page's new chat is `team`'s: it started on the live connection, its picker offers the team's model,
    and a team that falls back to a script says so once (a note on_chat_start sends)."""
    starts.wait()
    starts.wait_live()  # the commands reached the connection the page kept
    expect(page.locator("#chat-profiles")).to_have_text(team)
    page.locator("#chat-settings-open-modal").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#model")).to_have_text(MODELS[team])
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    fell_back = page.locator(AGENT_STEP).filter(has_text="has no replies for this team; using")
    expect(fell_back).to_have_count(1 if team == "customer-support" else 0)


def test_every_team_switch_brings_the_model_picker_and_the_commands(
    server: Any, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    starts = ChatStarts(page)
    page.goto(server.url + "/")
    shows_its_start(page, starts, "content-studio")
    for team in SWITCHES:
        starts.expect_new()
        page.locator("#chat-profiles").click()
        page.get_by_role("option").filter(has=page.get_by_text(team, exact=True)).click()
        shows_its_start(page, starts, team)
