"""The model picker in a real browser (issue 16, point 13): Chainlit's chat settings offer the models this server
can run, a team answers with the one picked, the thread keeps it, and a team whose pattern the picked model
cannot drive refuses to start, naming a model that would, before any model call.

The server runs on a scripted model with a scripts folder of its own (tests/ui/model_scripts) and a stand-in
Ollama server listing one model. Set PARLEY_UI_SHOTS=/some/folder to keep screenshots (light and dark).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from chat_started import ChatStarts, evaluate, send_message
from ui.conftest import wait_until

from parley.web._guard import LOCAL_USER

try:
    from playwright.sync_api import Page, expect
except ImportError:
    pytest.skip("Python Playwright is not installed in this environment", allow_module_level=True)

if (
    "on_settings_update"
    not in (Path(__file__).resolve().parents[2] / "parley" / "web" / "app.py").read_text()
):
    pytest.skip("the model picker is not wired into the web chat yet", allow_module_level=True)
expect.set_options(timeout=30_000)
MODEL_SCRIPTS = Path(__file__).resolve().parent / "model_scripts"
OLLAMA_MODEL = "qwen2.5:7b"
AGENT_STEP = '.step[data-step-type="assistant_message"]'
SHOTS = os.environ.get("PARLEY_UI_SHOTS", "")


class _Tags(BaseHTTPRequestHandler):
    """Ollama's model list, as a local Ollama server answers it."""

    def do_GET(self) -> None:
        body = json.dumps({"models": [{"name": OLLAMA_MODEL, "model": OLLAMA_MODEL}]}).encode()
        self.send_response(200 if self.path == "/api/tags" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The web chat on studio.yaml, with this module's scripts folder and the stand-in Ollama server."""
    here = str(Path(__file__).with_name("conftest.py"))
    conf = next(p for p in request.config.pluginmanager.get_plugins() if getattr(p, "__file__", "") == here)
    if conf.browser_missing():
        pytest.skip(conf.browser_missing())
    ollama = ThreadingHTTPServer(("127.0.0.1", 0), _Tags)
    ollama.daemon_threads = True
    threading.Thread(target=ollama.serve_forever, daemon=True).start()
    srv = conf.Server(tmp_path_factory.mktemp("data-models"), "studio.yaml")
    base_env = srv.env
    extra = {
        "PARLEY_SCRIPTS": str(MODEL_SCRIPTS),
        "OLLAMA_HOST": f"http://127.0.0.1:{ollama.server_address[1]}",
    }
    srv.env = lambda: base_env() | extra
    try:
        yield srv.start()
    finally:
        srv.stop()
        ollama.shutdown()
        ollama.server_close()


class Picker:
    """One tab, with the gestures the picker needs."""

    def __init__(self, page: Page, server: Any) -> None:
        self.page, self.server = page, server
        self.starts = ChatStarts(page)
        """The chat sessions the page starts: each page load, team switch or reopened thread starts one."""

    def goto(self, path: str = "/") -> Picker:
        self.page.goto(self.server.url + path)
        self.starts.wait()
        return self

    def open(self) -> Picker:
        return self.goto("/")

    def pick_team(self, name: str) -> Picker:
        self.starts.expect_new()  # the page's own chat has started (open): the switch starts the next one
        self.page.locator("#chat-profiles").click()
        self.page.get_by_role("option").filter(has=self.page.get_by_text(name, exact=True)).click()
        expect(self.page.locator("#chat-profiles")).to_have_text(name)
        self.starts.wait()
        return self

    def settings(self) -> None:
        self.page.locator("#chat-settings-open-modal").click()
        expect(self.page.get_by_role("dialog")).to_be_visible()

    def pick_model(self, label: str, *, shot: str = "") -> None:
        self.settings()
        self.page.locator("#model").click()
        self.page.get_by_role("option", name=label, exact=True).click()
        expect(self.page.locator("#model")).to_have_text(label)
        if shot:
            self.shoot(shot)
        self.page.get_by_role("button", name="Confirm").click()
        expect(self.page.get_by_role("dialog")).to_be_hidden()

    def send(self, text: str) -> None:
        send_message(self.page, text)

    def shoot(self, name: str) -> None:
        if not SHOTS:
            return
        for theme in ("light", "dark"):
            evaluate(
                self.page,
                "t => { const c = document.documentElement.classList; c.remove('light', 'dark'); c.add(t); }",
                theme,
            )
            self.page.wait_for_timeout(400)  # for the picture only: the theme's colours fade in
            self.page.screenshot(path=str(Path(SHOTS) / f"models-{name}-{theme}.png"))


def test_a_picked_script_answers_and_the_thread_keeps_it(server: Any, new_page: Callable[[], Page]) -> None:
    tab = Picker(new_page(), server).open()
    tab.settings()
    tab.page.locator("#model").click()
    offered = tab.page.get_by_role("option")
    expect(offered).to_have_text(  # the server's own, the embedded one, Ollama's list, the scripts that fit
        [
            "This server's model · studio.yaml",
            "Embedded SmolLM2 135M (demo quality, cannot call tools)",
            f"Ollama · {OLLAMA_MODEL}",
            "Script · studio-brief.yaml",  # the others name roles content-studio does not have
        ]
    )
    tab.shoot("offered")
    tab.page.keyboard.press("Escape")
    tab.page.keyboard.press("Escape")
    expect(tab.page.get_by_role("dialog")).to_be_hidden()

    tab.pick_model("Script · studio-brief.yaml")
    expect(tab.page.get_by_text("Model for this conversation: Script · studio-brief.yaml")).to_be_visible()
    tab.send("Write about churn")
    expect(tab.page.locator(AGENT_STEP).filter(has_text="Picked-script research")).to_be_visible()
    expect(tab.page.locator(AGENT_STEP).filter(has_text="Picked-script review. APPROVE")).to_be_visible()
    (thread,) = [t for t in server.threads(LOCAL_USER) if t.team == "content-studio"]
    picked = f"scripted:{(MODEL_SCRIPTS / 'studio-brief.yaml').resolve()}"
    assert thread.model == picked  # the choice is stored with the thread
    wait_until(lambda: any(e["type"] == "result" for e in server.events(thread.id)), "the run to end")
    (started,) = [e for e in server.events(thread.id) if e["type"] == "run_started"]
    assert started["model"] == picked
    tab.shoot("answered")

    # Reopened, the thread shows the model it runs on.
    tab.goto(f"/thread/{thread.id}")
    expect(tab.page.locator(AGENT_STEP).filter(has_text="Picked-script research")).to_be_visible()
    tab.settings()
    expect(tab.page.locator("#model")).to_have_text("Script · studio-brief.yaml")


def test_a_team_the_embedded_model_cannot_drive_refuses_before_any_model_call(
    server: Any,
    new_page: Callable[[], Page],
) -> None:
    tab = Picker(new_page(), server).open().pick_team("editorial-desk")
    tab.pick_model("Embedded SmolLM2 135M (demo quality, cannot call tools)", shot="embedded")
    refusal = tab.page.locator(AGENT_STEP).filter(has_text="editorial-desk cannot start on Embedded SmolLM2")
    expect(refusal).to_have_count(1)  # said as soon as it is picked
    expect(refusal).to_be_visible()
    tab.shoot("picked")
    expect(refusal).to_contain_text("hierarchical pattern needs editor to delegate")
    expect(refusal).to_contain_text(f"Choose Ollama · {OLLAMA_MODEL} in the chat settings")

    tab.send("Write about churn for small shops")
    expect(refusal).to_have_count(2)  # and again when asked to start: nothing runs
    tab.shoot("refused")
    assert not [t for t in server.threads(LOCAL_USER) if t.team == "editorial-desk"]  # no thread was made
    expect(tab.page.locator("body")).not_to_contain_text("Run ended")


def test_the_embedded_models_messages_are_marked_demo_quality(
    server: Any, new_page: Callable[[], Page]
) -> None:
    """Last in the module: its run on the embedded model may still be going when the server stops."""
    tab = Picker(new_page(), server).open()
    tab.pick_model("Embedded SmolLM2 135M (demo quality, cannot call tools)")
    expect(tab.page.get_by_text("Model for this conversation: Embedded SmolLM2")).to_be_visible()
    tab.send("Say hello in one sentence")
    notice = tab.page.get_by_text("writes demo-quality text", exact=False)
    expect(notice).to_have_count(1, timeout=60_000)  # said plainly, once
    expect(notice).to_contain_text("invents figures")
    first = tab.page.locator(AGENT_STEP).filter(has_text="demo quality · embedded model").first
    # Real inference on a busy 2-core machine: a worker beside it has taken more than a minute for this first answer.
    expect(first).to_be_visible(timeout=180_000)
    tab.shoot("demo")
