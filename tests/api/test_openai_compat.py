"""The OpenAI-compatible endpoint through the official `openai` SDK: a team answers, streamed and not; usage is the
run's; the history sent back continues the same conversation; errors arrive as the SDK's own exceptions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from conftest import Api
from openai import AsyncOpenAI

MODEL = "duo@scripted:duo.yaml"
FIRST = "Correct. APPROVED"
SECOND = "Right, and it is known for its food. APPROVED"


@pytest.fixture
async def sdk(api: Api) -> AsyncIterator[dict[str, AsyncOpenAI]]:
    clients = {}
    for user in ("alice", "bob"):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), timeout=30)
        clients[user] = AsyncOpenAI(
            api_key=api.tokens[user], base_url="http://parley.test/v1", http_client=http, max_retries=0
        )
    yield clients
    for client in clients.values():
        await client.close()


async def stored_result(api: Api, tid: str, run: int) -> dict[str, object]:
    results = [r.payload for r in await api.store.events(tid) if r.type == "result"]
    return results[run - 1]


async def test_the_teams_are_the_models(sdk: dict[str, AsyncOpenAI]) -> None:
    ids = [m.id async for m in sdk["alice"].models.list()]
    assert "duo" in ids and "customer-support" in ids


async def test_a_team_answers_and_the_history_sent_back_continues_its_conversation(
    api: Api, sdk: dict[str, AsyncOpenAI]
) -> None:
    client = sdk["alice"]
    question = {"role": "user", "content": "What is the capital of France?"}
    first = await client.chat.completions.create(model=MODEL, messages=[question])  # type: ignore[list-item]
    assert first.choices[0].message.content == FIRST and first.choices[0].finish_reason == "stop"
    parley = (first.model_extra or {})["parley"]
    tid = parley["conversation"]
    result = await stored_result(api, tid, 1)
    assert first.usage is not None
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (
        result["prompt_tokens"],
        result["completion_tokens"],
    )
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens > 0
    history = [
        question,
        {"role": "assistant", "content": FIRST + "\n"},
        {"role": "user", "content": "And Lyon?"},
    ]
    second = await client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
    assert second.choices[0].message.content == SECOND
    assert (second.model_extra or {})["parley"] == {
        **(second.model_extra or {})["parley"],
        "conversation": tid,
        "run": 2,
    }
    tasks = [r.payload["content"] for r in await api.store.events(tid) if r.type == "human_message"]
    assert tasks == ["What is the capital of France?", "And Lyon?"]
    # Without the memory of this process (a restart), the store alone finds it again.
    api.hub.histories.clear()
    third = await client.chat.completions.create(
        model=MODEL,
        messages=[*history, {"role": "assistant", "content": SECOND}, {"role": "user", "content": "Thanks"}],  # type: ignore[list-item]
    )
    assert (third.model_extra or {})["parley"]["conversation"] == tid


async def test_streamed_the_agents_speak_in_chunks_of_their_own_then_the_answer_and_usage(
    api: Api, sdk: dict[str, AsyncOpenAI]
) -> None:
    stream = await sdk["alice"].chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}], stream=True
    )
    speakers, content, last = [], "", None
    async for chunk in stream:
        delta = chunk.choices[0].delta
        extra = delta.model_extra or {}
        if extra.get("reasoning_content"):
            speakers.append(extra["name"])
            assert extra["reasoning_content"].startswith(f"[{extra['name']}] ")
        content += delta.content or ""
        last = chunk
    assert speakers == ["writer", "editor"]
    assert content == FIRST
    assert last is not None and last.choices[0].finish_reason == "stop" and last.usage is not None
    tid = (last.model_extra or {})["parley"]["conversation"]
    result = await stored_result(api, tid, 1)
    assert (
        last.usage.prompt_tokens == result["prompt_tokens"]
        and last.usage.completion_tokens == result["completion_tokens"]
    )


async def test_a_history_from_elsewhere_starts_a_conversation_with_it_as_context(
    api: Api, sdk: dict[str, AsyncOpenAI]
) -> None:
    history = [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    answer = await sdk["alice"].chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
    tid = (answer.model_extra or {})["parley"]["conversation"]
    [task] = [r.payload["content"] for r in await api.store.events(tid) if r.type == "human_message"]
    assert "[instructions] Answer in one sentence." in task and "[assistant] Hi, how can I help?" in task
    assert task.endswith("What is the capital of France?")
    # Sent back, that history continues this conversation, not a new one.
    more = [*history, {"role": "assistant", "content": FIRST}, {"role": "user", "content": "And Lyon?"}]
    api.hub.histories.clear()
    again = await sdk["alice"].chat.completions.create(model=MODEL, messages=more)  # type: ignore[arg-type]
    assert (again.model_extra or {})["parley"]["conversation"] == tid
    assert again.choices[0].message.content == SECOND


async def test_another_users_history_never_continues_a_conversation_that_is_not_theirs(
    api: Api, sdk: dict[str, AsyncOpenAI]
) -> None:
    question = {"role": "user", "content": "What is the capital of France?"}
    first = await sdk["alice"].chat.completions.create(model=MODEL, messages=[question])  # type: ignore[list-item]
    alices = (first.model_extra or {})["parley"]["conversation"]
    history = [question, {"role": "assistant", "content": FIRST}, {"role": "user", "content": "And Lyon?"}]
    bobs = await sdk["bob"].chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
    assert (bobs.model_extra or {})["parley"]["conversation"] != alices
    assert [t.id for t in await api.store.list_threads("alice")] == [alices]


async def test_errors_arrive_as_the_sdks_exceptions_with_words(api: Api, sdk: dict[str, AsyncOpenAI]) -> None:
    with pytest.raises(openai.NotFoundError, match="no team 'nope'"):
        await sdk["alice"].chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="last message must be the user's"):
        await sdk["alice"].chat.completions.create(
            model="duo", messages=[{"role": "assistant", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError, match="PARLEY_SCRIPTS"):
        await sdk["alice"].chat.completions.create(
            model="duo@scripted:/etc/passwd", messages=[{"role": "user", "content": "hi"}]
        )
    stranger = AsyncOpenAI(
        api_key="pt_0123456789ab_nothing",
        base_url="http://parley.test/v1",
        http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app)),
        max_retries=0,
    )
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        await stranger.models.list()
    await stranger.close()


async def test_a_question_over_the_openai_endpoint_gets_the_teams_default_answer(
    api: Api, sdk: dict[str, AsyncOpenAI]
) -> None:
    reply = await sdk["alice"].chat.completions.create(
        model="planner@scripted:plan.yaml", messages=[{"role": "user", "content": "Make a sales plan"}]
    )
    assert reply.choices[0].message.content == "Plan for the region given."
    tid = (reply.model_extra or {})["parley"]["conversation"]
    [answer] = [r.payload for r in await api.store.events(tid) if r.type == "answer"]
    assert (answer["content"], answer["actor"]) == ("Assume all regions.", "api")


async def test_a_tool_call_needing_approval_is_denied_over_the_openai_endpoint_saying_why(
    api: Api, sdk: dict[str, AsyncOpenAI]
) -> None:
    reply = await sdk["alice"].chat.completions.create(
        model="customer-support@scripted:refund.yaml",
        messages=[{"role": "user", "content": "Order 1042 arrived broken"}],
    )
    tid = (reply.model_extra or {})["parley"]["conversation"]
    [decision] = [r.payload for r in await api.store.events(tid) if r.type == "approval_decision"]
    assert decision["approved"] is False and "nobody can approve" in decision["reason"]
    assert reply.choices[0].message.content.endswith("RESOLVED")  # type: ignore[union-attr]
