"""What a model can do is read from the model info of the client that answers (and what parley's own clients
state), never from the backend's name; and the one private autogen-ext table parley reads is pinned here."""

from __future__ import annotations

from pathlib import Path

import pytest
from autogen_ext.models.anthropic import AnthropicChatCompletionClient
from autogen_ext.models.openai import OpenAIChatCompletionClient

from parley.engine.autogen.models import ModelPool, capabilities_of
from parley.engine.autogen.models.backends import GENERIC_INFO, with_known_info
from parley.engine.autogen.models.limits import known_window
from parley.engine.autogen.models.local import LocalClient
from parley.errors import ParleyError
from parley.models import BudgetExceeded, FunctionModel, Meter


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> ModelPool:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    return ModelPool(Meter())


def test_a_known_openai_model_takes_its_abilities_from_autogen_exts_table(pool: ModelPool) -> None:
    caps = pool.capabilities("openai:gpt-4o-mini")
    assert (caps.tools, caps.vision, caps.json_schema, caps.reflects) == (True, True, True, True)
    older = pool.capabilities("openai:gpt-3.5-turbo")  # no structured output: its picks are parsed, not bound
    assert (older.tools, older.vision, older.json_schema) == (True, False, False)


def test_a_model_autogen_ext_does_not_know_gets_the_generic_abilities(pool: ModelPool) -> None:
    caps = pool.capabilities("openai:my-own-finetune")
    assert (caps.tools, caps.vision, caps.json_schema) == (True, False, True)
    assert pool.capabilities("compatible:qwen2.5@http://127.0.0.1:9/v1").json_schema


def test_a_model_without_function_calling_gets_no_tools_whatever_its_backend(pool: ModelPool) -> None:
    caps = pool.capabilities("ollama:llava")  # autogen-ext's Ollama table: vision, no function calling
    assert (caps.tools, caps.vision, caps.reflects, caps.json_schema) == (False, True, False, False)
    assert not pool.capabilities(FunctionModel(lambda r: "hi", name="mute", tools=False)).tools
    assert pool.capabilities(FunctionModel(lambda r: "hi", name="talker")).tools


def test_anthropic_answers_are_never_bound_to_a_schema(pool: ModelPool) -> None:
    caps = pool.capabilities("anthropic:claude-3-5-sonnet-20241022")
    assert (caps.tools, caps.vision, caps.json_schema) == (True, True, False)


def test_the_embedded_model_states_what_model_info_cannot(pool: ModelPool) -> None:
    caps = capabilities_of(LocalClient(server=None))
    assert (caps.tools, caps.json_schema, caps.picks_reliably) == (False, True, False)


def test_a_scripted_model_is_never_asked_twice_for_a_vote(pool: ModelPool, tmp_path: Path) -> None:
    script = tmp_path / "s.yaml"
    script.write_text("roles: {alpha: [hello]}\n")
    caps = pool.capabilities(f"scripted:{script}")
    assert (caps.tools, caps.reasks, caps.json_schema) == (True, False, False)
    assert pool.scripts[0].cursors == {}  # reading its abilities took no reply


def test_autogen_ext_still_finds_the_info_and_window_of_the_models_parley_relies_on() -> None:
    """Fails loudly when autogen-ext changes what parley reads from it: the model info its public constructors
    find for known names (ValueError naming model_info for others), and its private token-limit tables."""
    known = with_known_info(OpenAIChatCompletionClient, model="gpt-4o", api_key="sk-test")
    assert known.model_info["vision"] and known.model_info["structured_output"]
    assert with_known_info(
        OpenAIChatCompletionClient, model="no-such-model", api_key="sk-test"
    ).model_info == (GENERIC_INFO)
    assert known_window(known, "gpt-4o") == 128_000
    claude = with_known_info(AnthropicChatCompletionClient, model="claude-3-5-sonnet-20241022", api_key="x")
    assert known_window(claude, "claude-3-5-sonnet-20241022") == 200_000
    assert known_window(known, "no-such-model") is None


def test_a_spent_budget_is_a_parley_error() -> None:
    assert issubclass(BudgetExceeded, ParleyError)


async def test_a_model_picks_one_choice_through_the_pool_metered_as_its_caller() -> None:
    judge = FunctionModel(lambda request: f'{{"answer": "{"no" if "rain" in request.last_text else "yes"}"}}')
    pool = ModelPool(Meter())
    picked = await pool.choose(
        judge, "judge", system="Grade strictly.", user="Was it sunny?", choices=["yes", "no"], field="answer"
    )
    assert picked == "yes"
    assert (
        await pool.choose(
            judge, "judge", system="", user="Did it rain?", choices=["yes", "no"], field="answer"
        )
        == "no"
    )
    assert [(m.role, m.text) for m in judge.requests[0].messages] == [
        ("system", "Grade strictly."),
        ("user", "Was it sunny?"),
    ]
    assert [c.source for c in pool.meter.calls] == ["judge", "judge"]


async def test_a_scripted_role_answers_its_tools_results_without_spending_a_reply(tmp_path: Path) -> None:
    """The production tool path for the scripted model: AutoGen's reflection call (tool results last, no tools
    offered) is answered with the results, as the replay server answers it, and the script's next reply waits."""
    from autogen_core.models import (
        AssistantMessage,
        FunctionExecutionResult,
        FunctionExecutionResultMessage,
        UserMessage,
    )
    from autogen_core.tools import ToolSchema

    script = tmp_path / "s.yaml"
    script.write_text("roles: {alpha: [{tool: lookup, args: {key: q3}}, 'next turn']}\n")
    pool = ModelPool(Meter())
    client = pool.client(f"scripted:{script}", "alpha")
    task = UserMessage(content="Q3?", source="user")
    lookup: ToolSchema = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
    call = await client.create([task], tools=[lookup])
    assert isinstance(call.content, list) and call.content[0].name == "lookup"
    results = FunctionExecutionResultMessage(
        content=[FunctionExecutionResult(call_id=call.content[0].id, name="lookup", content="4.2M")]
    )
    asked = [task, AssistantMessage(content=call.content, source="alpha"), results]
    reflection = await client.create(asked)
    assert reflection.content == "4.2M" and pool.scripts[0].cursors == {"alpha": 1}
    assert [c.reflection for c in pool.meter.calls] == [False, True]
    assert (await client.create([task])).content == "next turn"
