"""llama.cpp's own OpenAI-compatible HTTP server as a real peer (see _llama.py): the requests parley sends are
the ones a real server takes, every shipped team runs on it, and its limits hold."""

from __future__ import annotations

import json
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from _llama import ALIAS, llama_server, skip_without_llama
from autogen_core.models import AssistantMessage, SystemMessage, UserMessage

from parley import Conversation
from parley.catalog import resolve_team
from parley.engine.autogen.models import ModelPool
from parley.errors import ContextOverflowError
from parley.events import ErrorEvent, EscalationEvent, MessageEvent, RunResult
from parley.models import Meter

pytestmark = [pytest.mark.local_model, skip_without_llama()]

ROOT = Path(__file__).resolve().parents[2]
TEAMS = sorted(p.stem for p in (ROOT / "teams").glob("*.yaml"))
WINDOW = 4096
TWICE = [
    SystemMessage(content="You are analyst, a terse analyst."),
    UserMessage(content="How did Q3 go?", source="user"),
    AssistantMessage(content="Revenue grew 4%.", source="analyst"),
    AssistantMessage(content="Margins held.", source="analyst"),
]


@pytest.fixture(scope="module")
def llama() -> Iterator[str]:
    # n_predict well above the caps below: what stops each answer is the cap parley sends.
    with llama_server(n_ctx=WINDOW, n_predict=256) as url:
        yield url


@pytest.fixture
async def pool() -> Iterator[ModelPool]:
    p = ModelPool(Meter())
    yield p  # type: ignore[misc]
    await p.close()


async def test_the_peer_refuses_what_parley_used_to_send_and_takes_what_it_sends_now(
    llama: str, pool: ModelPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = openai.OpenAI(base_url=llama, api_key="none", max_retries=0)
    wire = [
        {"role": "system", "content": TWICE[0].content},
        {"role": "user", "content": "How did Q3 go?"},
        {"role": "assistant", "content": "Revenue grew 4%."},
        {"role": "assistant", "content": "Margins held."},
    ]
    with pytest.raises(openai.BadRequestError, match="Cannot have 2 or more assistant messages at the end"):
        raw.chat.completions.create(model=ALIAS, messages=wire, max_tokens=8)  # type: ignore[arg-type]

    for model in (f"compatible:{ALIAS}@{llama}", f"openai:{ALIAS}"):  # openai: through OPENAI_BASE_URL
        monkeypatch.setenv("OPENAI_BASE_URL", llama)
        monkeypatch.setenv("OPENAI_API_KEY", "none")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            result = await pool.client(model, "analyst", max_reply_tokens=16).create(TWICE)
        assert isinstance(result.content, str) and result.content.strip(), model
        assert not [w for w in seen if "mismatch" in str(w.message)], model


async def test_the_reply_cap_holds_against_the_server(llama: str, pool: ModelPool) -> None:
    client = pool.client(f"compatible:{ALIAS}@{llama}", "writer", max_reply_tokens=12)
    long_ask = [
        UserMessage(content="Write a long, detailed essay on customer churn, in ten sections.", source="user")
    ]
    result = await client.create(long_ask)
    assert result.finish_reason == "length"
    assert 0 < result.usage.completion_tokens <= 12
    assert pool.meter.calls[-1].completion_tokens == result.usage.completion_tokens  # reported, not estimated


async def test_a_prompt_over_the_servers_window_is_an_error_naming_both_sizes(
    llama: str, pool: ModelPool
) -> None:
    task = [UserMessage(content="revenue churn margin " * 1800, source="user")]
    # Refused before sending: the window comes from the server's /v1/models.
    with pytest.raises(
        ContextOverflowError, match=rf"analyst is [\d,]+ tokens .*window is {WINDOW:,} tokens"
    ):
        await pool.client(f"compatible:{ALIAS}@{llama}", "analyst").create(task)
    # A team file claiming a larger window: the server's own refusal becomes the same error, not retried.
    claimed = pool.client(f"compatible:{ALIAS}@{llama}", "analyst", context_tokens=100_000)
    with pytest.raises(
        ContextOverflowError, match=rf"analyst is [\d,]+ tokens; .*window is {WINDOW:,} tokens"
    ):
        async for _ in claimed.create_stream(task):
            pass
    assert pool.meter.calls == [] and len(pool.meter.failures) == 2


async def test_a_run_whose_task_cannot_fit_ends_with_error_and_no_turn(llama: str) -> None:
    conv = Conversation("content-studio", model=f"compatible:{ALIAS}@{llama}")
    run = conv.start("Summarise: " + "revenue churn margin " * 1800)
    events = [ev async for ev in run]
    await conv.close()
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "error" and result.turns == 0
    assert f"window is {WINDOW:,} tokens" in result.detail
    assert not [e for e in events if isinstance(e, MessageEvent)]


def test_the_embedded_server_answers_to_its_model_name() -> None:
    """AutoGen warned "Resolved model mismatch" on every run when the embedded server's model id was "-"."""
    from parley.engine.autogen.models.local import MODEL_ALIAS, base_url

    with urllib.request.urlopen(f"{base_url()}/models", timeout=10) as answer:
        listing = json.load(answer)
    assert [m["id"] for m in listing["data"]] == [MODEL_ALIAS]


_times: dict[str, float] = {}


@pytest.mark.parametrize("team", TEAMS)
async def test_every_shipped_team_runs_six_turns_on_llamacpp(llama: str, team: str) -> None:
    """The acceptance: each team through `compatible:`, tools offered (this server answers them in text), one
    role often speaking twice in a row, six turns without an error. Answers are capped short to keep it quick."""
    spec = resolve_team(team)
    spec = spec.model_copy(
        update={
            "max_reply_tokens": 16,
            # The tiny model repeats itself; the loop check (a real stop) would end some teams before six turns.
            "termination": spec.termination.model_copy(update={"max_repeats": 7, "timeout_s": None}),
        }
    )
    conv = Conversation(spec, model=f"compatible:{ALIAS}@{llama}", max_turns=6)
    t0 = time.perf_counter()
    run = conv.start("Our churn rose 2% last quarter. What should we do?")
    events = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        async for ev in run:
            events.append(ev)
            if isinstance(ev, EscalationEvent):  # the loop team asks a human after its rounds: take the first
                run.resolve(ev.escalation_id, choose=1)
    await conv.close()
    _times[team] = time.perf_counter() - t0

    result = events[-1]
    assert isinstance(result, RunResult)
    assert not [e for e in events if isinstance(e, ErrorEvent)], result.detail
    assert result.stop_reason != "error", result.detail
    said = [e for e in events if isinstance(e, MessageEvent)]
    assert all(m.content.strip() for m in said)
    # Six turns, unless the pattern ends by itself sooner (a pipeline, a fan-out, a vote: each role once).
    assert result.turns == 6 or (result.stop_reason == "completed" and result.turns >= 3), (
        result.stop_reason,
        result.turns,
    )
    assert not [w for w in seen if "mismatch" in str(w.message)]
