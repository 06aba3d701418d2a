"""The web chat's model picker and what a conversation says about its models (issue 16, points 5 and 13).

The models offered come from a stand-in Ollama server, the keys set and a scripts folder; the embedded model is
never started here (what it can do is known without it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import collect, team_yaml
from fakeserver import FakeServer

from parley._model_notes import DEMO_MARK
from parley.conversation import Conversation
from parley.engine.autogen.models import local
from parley.events import NoticeEvent
from parley.models import FunctionModel
from parley.store import Store
from parley.tools import ToolRegistry
from parley.web import _modelpicker as picker

SCRIPTS = Path(__file__).resolve().parent / "ui" / "model_scripts"
STUDIO_SCRIPT = Path(__file__).resolve().parent / "ui" / "scripts" / "studio.yaml"
SUPPORT_SCRIPT = STUDIO_SCRIPT.with_name("support.yaml")
LOOKUP = '''
    from parley.tools import tool

    @tool
    def lookup(key: str) -> str:
        """Look a figure up."""
        return "unknown"
'''


@pytest.fixture(autouse=True)
def _no_embedded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deciding what a team can do on the embedded model must not start it (it is slow to load)."""

    def refuse() -> str:
        raise AssertionError("the embedded model was started")

    monkeypatch.setattr(local, "base_url", refuse)


@pytest.fixture
def ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    server = FakeServer().start()
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def no_ollama(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer().start()
    url = server.url
    server.stop()  # a port nobody listens on
    monkeypatch.setenv("OLLAMA_HOST", url)


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(picker.SCRIPTS_ENV, str(SCRIPTS))
    return SCRIPTS


# -- what a conversation says about its models -------------------------------------------------------------


def test_the_embedded_model_says_demo_quality_first_and_one_notice_for_all_tool_roles() -> None:
    conv = Conversation("q3-sales-review", model="local")
    notices = conv.take_notices()
    assert notices[0].startswith("The embedded model") and "demo-quality" in notices[0]
    assert "invents figures" in notices[0] and "loops" in notices[0]
    tools = [n for n in notices if "cannot call tools" in n]
    assert len(tools) == 1, notices  # one notice names every role, instead of one per role
    tool_roles = [r.name for r in conv.team.roles if r.tools]
    assert len(tool_roles) >= 2 and all(name in tools[0] for name in tool_roles)
    assert "`openai:gpt-4o-mini`" in tools[0]  # a model string in code, intact in Markdown


def test_notices_are_said_once_per_thread() -> None:
    conv = Conversation("q3-sales-review", model="local")
    first = conv.take_notices()
    assert first
    # The run puts what it said in the history (as a reopened thread's history holds it): nothing is new.
    conv.history += [NoticeEvent(source="parley", content=n, level="warning", turn=0) for n in first]
    assert conv.take_notices() == []


def test_a_model_that_calls_tools_gets_no_model_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # the client is built, never called
    conv = Conversation("q3-sales-review", model="openai:gpt-4o-mini")
    assert conv.take_notices() == []


# -- the teams a model cannot drive ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("team", "roles"),
    [
        ("editorial-desk", ["editor"]),  # hierarchical: the manager delegates by tool calls
        ("support-desk", ["triage", "billing", "technical"]),  # swarm: handoffs are tool calls
        ("content-studio", []),
    ],
)
def test_which_roles_the_embedded_model_cannot_drive(team: str, roles: list[str]) -> None:
    assert Conversation(team, model="local").cannot_drive() == roles


def test_the_refusal_names_a_model_that_would(ollama: FakeServer, scripts: Path) -> None:
    ollama.reply_json({"models": [{"name": "qwen2.5:7b"}]})
    conv = Conversation("editorial-desk", model="local")
    choices = _run(picker.available_models(conv.team, conv.model))
    text = picker.refusal(conv, choices)
    assert text is not None
    assert "editorial-desk cannot start on Embedded SmolLM2" in text
    assert "hierarchical pattern needs editor to delegate" in text
    assert "**Ollama · qwen2.5:7b**" in text  # a real model before a script
    assert picker.refusal(Conversation("content-studio", model="local"), choices) is None


def test_without_a_model_that_would_the_refusal_says_how_to_get_one(no_ollama: None, tmp_path: Path) -> None:
    conv = Conversation("support-desk", model="local")
    text = picker.refusal(conv, [picker.ModelChoice("local", "local", picker.DEMO_LABEL, False)])
    assert text is not None and "hand the conversation over" in text
    assert "ollama pull" in text and "OPENAI_API_KEY" in text


# -- the models offered ---------------------------------------------------------------------------------


def test_the_picker_offers_embedded_ollama_remote_and_fitting_scripts(
    ollama: FakeServer, scripts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ollama.reply_json({"models": [{"name": "qwen2.5:7b"}, {"name": "llama3.2:3b"}]})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    team = Conversation("content-studio", model="local").team
    choices = _run(picker.available_models(team, "local"))
    models = [c.model for c in choices]
    assert models[0] == "local" and not choices[0].calls_tools
    assert "demo quality" in choices[0].label
    assert models[1:3] == ["ollama:qwen2.5:7b", "ollama:llama3.2:3b"]
    assert ollama.last.path == "/api/tags"
    assert "openai:gpt-4o-mini" in models and not any(m.startswith("anthropic:") for m in models)
    scripted = [c for c in choices if c.model.startswith("scripted:")]
    assert [c.key for c in scripted] == ["scripted:studio-brief.yaml"]  # the others name other teams' roles
    assert str(SCRIPTS) not in scripted[0].key + scripted[0].label  # no server path goes to the browser


def test_no_ollama_server_no_ollama_models(
    no_ollama: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(picker.SCRIPTS_ENV, str(tmp_path))  # an empty folder
    team = Conversation("content-studio", model="local").team
    assert [c.model for c in _run(picker.available_models(team, "local"))] == ["local"]


def test_the_servers_own_model_is_offered_first_and_preselected(no_ollama: None, scripts: Path) -> None:
    conv = Conversation("content-studio", model=f"scripted:{STUDIO_SCRIPT}")
    choices = _run(picker.available_models(conv.team, conv.model))
    assert choices[0].key == "own" and choices[0].label == "This server's model · studio.yaml"
    (select,) = picker.widgets(choices, conv.model)
    assert select.initial == "own" and select.id == picker.SETTING


def test_only_a_model_the_server_offered_can_be_chosen(no_ollama: None, scripts: Path) -> None:
    team = Conversation("content-studio", model="local").team
    choices = _run(picker.available_models(team, "local"))
    assert picker.choice_of({"model": "scripted:studio-brief.yaml"}, choices) is not None
    assert picker.choice_of({"model": "scripted:/etc/passwd.yaml"}, choices) is None
    assert picker.choice_of({"model": "openai:gpt-4o"}, choices) is None  # no key set: not offered


# -- choosing --------------------------------------------------------------------------------------------


def test_a_new_chat_falls_back_to_a_fitting_script_when_the_servers_model_cannot_run_the_team(
    no_ollama: None, scripts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_MODEL", f"scripted:{SUPPORT_SCRIPT}")  # names roles the desk has not
    team = Conversation("editorial-desk", model="local").team
    conv, choices, text = _run(picker.open_conversation(team))
    assert conv is not None and conv.model == f"scripted:{(SCRIPTS / 'desk-brief.yaml').resolve()}"
    assert text == "support.yaml has no replies for this team; using **Script · desk-brief.yaml**."
    assert any(c.model == "local" for c in choices)


def test_switching_builds_the_conversation_on_the_choice_until_it_has_started(
    no_ollama: None, scripts: Path
) -> None:
    team = Conversation("editorial-desk", model="local").team
    conv, choices, _ = _run(
        picker.open_conversation(team, lambda t, **kw: Conversation(t, model="local", **kw))
    )
    assert conv is not None and conv.model == "local"
    new, text = picker.switch(team, conv, {"model": "scripted:desk-brief.yaml"}, choices)
    assert new is not None and new.model.endswith("desk-brief.yaml") and new.cannot_drive() == []
    assert text == "Model for this conversation: **Script · desk-brief.yaml**."
    back, text = picker.switch(team, new, {"model": "local"}, choices)
    assert back is not None and back.model == "local"
    assert text is not None and "cannot start on Embedded SmolLM2" in text  # said as soon as it is chosen
    assert picker.switch(team, back, {"model": "local"}, choices) == (None, None)  # nothing changed
    back.thread_id, back.store = "t", object()  # type: ignore[assignment]  # it has started: stored
    kept, text = picker.switch(team, back, {"model": "scripted:desk-brief.yaml"}, choices)
    assert kept is None and text is not None and "stays on **Embedded SmolLM2" in text


def test_the_embedded_models_messages_are_marked() -> None:
    conv = Conversation("content-studio", model="local")
    assert picker.marked(conv, "writer", "Hello").endswith(DEMO_MARK)
    assert picker.marked(conv, "parley", "Hello") == "Hello"
    scripted = Conversation("content-studio", model=f"scripted:{STUDIO_SCRIPT}")
    assert picker.marked(scripted, "writer", "Hello") == "Hello"


def _run(coro):
    import asyncio

    return asyncio.run(coro)


# -- notices once per thread, through real runs ------------------------------------------------------------


async def test_model_notices_are_said_at_the_first_run_only_even_after_a_resume(
    write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """The issue's case: 3–6 notices per run, again on every run in the same thread."""
    write("tools/lookup.py", LOOKUP)
    team = write(
        "team.yaml",
        team_yaml(
            roles=("clerk", "analyst", "reviewer"),
            max_turns=3,
            tools={"clerk": ["lookup"], "analyst": ["lookup"]},
        ),
    )
    registry = ToolRegistry.discover([tmp_path / "tools"])
    model = FunctionModel(lambda request: f"{request.who} has nothing to add", name="plain", tools=False)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'parley.db'}")
    conv = Conversation(team, model=model, registry=registry)
    try:
        tid = await conv.save_to(store, "ann", "notices")
        first = _notices(await collect(conv.start("first task")))
        assert first == [
            "clerk, analyst: its model (`function:plain`) cannot call tools, so lookup stays unused; "
            "use a model that calls tools (e.g. `openai:gpt-4o-mini` or `ollama:qwen2.5`)"
        ]
        assert _notices(await collect(conv.start("second task"))) == []
        await conv.close()
        again = await Conversation.resume(store, tid, model=model, registry=registry, teams_dirs=[tmp_path])
        try:
            assert _notices(await collect(again.start("third task"))) == []
        finally:
            await again.close()
    finally:
        await conv.close()
        await store.close()


def _notices(events: list[Any]) -> list[str]:
    return [e.content for e in events if isinstance(e, NoticeEvent) and e.source == "parley"]


def test_model_names_in_the_pickers_messages_survive_chainlits_markdown(
    no_ollama: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`:name` is a directive to Chainlit's Markdown: "openai:gpt-4o-mini" would show as "openai"."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv(picker.SCRIPTS_ENV, str(tmp_path))
    conv = Conversation("content-studio", model="local")
    own = picker.ModelChoice("own", "openai:gpt-4.1", "This server's model · openai:gpt-4.1", True)
    choices = [*_run(picker.available_models(conv.team, "openai:gpt-4o")), own]
    new, text = picker.switch(conv.team, conv, {"model": "own"}, choices)
    assert (
        new is not None and text == "Model for this conversation: **This server's model · openai\\:gpt-4.1**."
    )
