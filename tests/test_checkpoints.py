"""Checkpoints are small deltas over the event log; a team is rebuilt from what was said plus the last checkpoint.

Conversations stored before checkpoints were versioned (tests/data/v1-store, made by its make.py) still open and
continue where they stopped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import collect, team_yaml
from autogen_core.models import AssistantMessage, UserMessage

from parley import Conversation
from parley.events import HumanMessageEvent, MessageEvent, RunResult, event_adapter
from parley.state import Said, restore
from parley.store import Store

Write = Callable[[str, str], Path]
ROOT = Path(__file__).resolve().parent.parent
V1 = ROOT / "tests" / "data" / "v1-store"
THREADS = {
    "round_robin": "00000000-0000-4000-8000-000000000001",
    "selector": "00000000-0000-4000-8000-000000000002",
    "sequential": "00000000-0000-4000-8000-000000000003",
    "stopped": "00000000-0000-4000-8000-000000000004",
    "died": "00000000-0000-4000-8000-000000000005",
}


@pytest.fixture
async def v1_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A copy of the store made by the code before versioned checkpoints (its team and script paths are relative
    to the repository's root)."""
    monkeypatch.chdir(ROOT)
    db = tmp_path / "v1.sqlite3"
    shutil.copyfile(V1 / "store.sqlite3", db)
    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    yield store  # type: ignore[misc]
    await store.close()


def _said(events: list[object]) -> list[tuple[str, str]]:
    return [(e.source, e.content) for e in events if isinstance(e, MessageEvent | HumanMessageEvent)]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "before", "after"),
    [
        pytest.param(
            "round_robin",
            [
                ("user", "Plan the launch"),
                ("alpha", "Note 1 added."),
                ("beta", "beta 1"),
                ("user", "focus on EMEA"),
                ("gamma", "gamma 1"),
                ("alpha", "alpha 2"),
            ],
            [("beta", "beta 2"), ("gamma", "gamma 2")],
            id="round-robin-with-interjection",
        ),
        pytest.param(
            "selector",
            [("user", "Write a brief"), ("beta", "beta 1"), ("alpha", "alpha 1"), ("beta", "beta 2")],
            [("alpha", "alpha 2"), ("beta", "beta 3")],
            id="selector",
        ),
        pytest.param(
            "sequential",
            [
                ("user", "Research the market"),
                ("research", "research 1"),
                ("write", "write 1"),
                ("review", "review 1"),
            ],
            [("research", "research 2"), ("write", "write 2")],
            id="sequential",
        ),
        pytest.param(
            "died",
            [
                ("user", "Draft the plan"),
                ("alpha", "alpha 1"),
                ("beta", "beta 1"),
                ("gamma", "gamma 1 takes its time to say this"),
                ("alpha", "alpha 2"),
                ("beta", "beta 2"),
            ],
            [("gamma", "gamma 2 takes its time to say this"), ("alpha", "alpha 3")],
            id="process-died-mid-turn",
        ),
        pytest.param(
            "stopped",
            [("user", "Go"), ("alpha", "alpha 1")],
            [("beta", "beta 2"), ("alpha", "alpha 2")],
            id="stopped-mid-turn",
        ),
    ],
)
async def test_a_conversation_stored_before_versioned_checkpoints_opens_and_continues(
    v1_store: Store, name: str, before: list[tuple[str, str]], after: list[tuple[str, str]]
) -> None:
    tid = THREADS[name]
    conv = await Conversation.resume(v1_store, tid, teams_dirs=[V1], max_turns=2)
    assert _said(conv.history) == before  # what was said is intact
    shown = await collect(conv.start("Carry on"))
    result = shown[-1]
    assert isinstance(result, RunResult) and result.stop_reason in ("max_turns", "completed"), result
    assert _said(shown) == [("user", "Carry on"), *after]
    # The continuation is stored with a small, versioned checkpoint; the thread reads back whole.
    checkpoint = await v1_store.latest_checkpoint(tid)
    assert checkpoint is not None and checkpoint.state["v"] == 2
    stored = [event_adapter.validate_python(r.payload) for r in await v1_store.events(tid)]
    assert _said(stored) == [*before, ("user", "Carry on"), *after]


async def test_the_resumed_round_robin_remembers_its_notes_and_what_each_role_heard(v1_store: Store) -> None:
    conv = await Conversation.resume(v1_store, THREADS["round_robin"], teams_dirs=[V1], max_turns=1)
    assert [(n["role"], n["text"]) for n in conv.notes_board] == [("alpha", "EMEA first")]
    await collect(conv.start("Carry on"))
    [call] = [c for c in conv.pool.scripts[0].calls if c.who == "beta"]
    heard = [
        (type(m).__name__, m.content) for m in call.messages if isinstance(m, UserMessage | AssistantMessage)
    ]
    # The role's window (the team's default context) over everything said: the task, the human's interjection,
    # the latest turns, in order.
    assert heard == [
        ("UserMessage", "Plan the launch"),
        ("UserMessage", "focus on EMEA"),
        ("UserMessage", "gamma 1"),
        ("UserMessage", "alpha 2"),
        ("UserMessage", "Carry on"),
    ]


async def test_checkpoints_stay_small_however_long_the_conversation(write: Write, store: Store) -> None:
    turns = 40
    team = write("team.yaml", team_yaml(roles=("alpha", "beta"), max_turns=turns))
    replies = [f"reply number {i} " + "with some words " * 20 for i in range(turns)]
    script = write(
        "s.yaml",
        "roles:\n"
        + "".join(f"  {role}: {json.dumps(replies[k::2])}\n" for k, role in enumerate(("alpha", "beta"))),
    )
    conv = Conversation(team, model=f"scripted:{script}")
    tid = await conv.save_to(store, "dana", "long")
    sizes: list[int] = []
    await collect(
        conv.start("Talk"),
        lambda ev: (
            sizes.append(len(json.dumps(conv.checkpoints.state))) if isinstance(ev, MessageEvent) else None
        ),
    )
    assert len(sizes) == turns
    assert max(sizes) < 400 and sizes[-1] <= sizes[0] + 20  # nothing in it grows with the conversation
    checkpoint = await store.latest_checkpoint(tid)
    assert checkpoint is not None and checkpoint.turn == turns and checkpoint.state["v"] == 2
    # Resumed in another process, the team picks up with the right speaker and everything said.
    again = await Conversation.resume(store, tid, model=f"scripted:{script}", teams_dirs=[team.parent])
    assert again.checkpoints.said[-1] == Said("beta", replies[-1])
    assert len(again.checkpoints.said) == turns + 1


def test_restore_is_a_pure_function_of_the_events_and_the_checkpoint() -> None:
    from parley.events import RunStartedEvent

    events = [
        RunStartedEvent(
            source="user",
            content="Go",
            turn=0,
            team="t",
            model="scripted",
            pattern="swarm",
            roles=["alpha", "beta"],
        ),
        HumanMessageEvent(source="user", content="Go", mode="task", turn=0),
        MessageEvent(source="alpha", content="a1", turn=1),
        MessageEvent(source="beta", content="b1", kind="handoff", turn=2),
    ]
    checkpoint = {"v": 2, "speaker": "beta", "handoff": "alpha", "summaries": {}, "steps": {}}
    state = restore(events, checkpoint)
    assert state.turn == 2 and state.checkpoint == checkpoint
    # The process died after beta's turn (no result): nothing is lost, Go was delivered.
    assert state.said == [Said("user", "Go"), Said("alpha", "a1"), Said("beta", "b1", "handoff", "alpha")]
    assert state.pending == []
    assert restore(events, checkpoint) == state


async def test_autogen_state_layout_is_the_one_the_rebuild_fills() -> None:
    """The rebuild fills AutoGen's own state of a fresh team: fails loudly if AutoGen changes that layout."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.teams import (
        DiGraphBuilder,
        GraphFlow,
        RoundRobinGroupChat,
        SelectorGroupChat,
        Swarm,
    )
    from autogen_ext.models.replay import ReplayChatCompletionClient

    from parley.engine.autogen.state import rebuild_state

    client = ReplayChatCompletionClient(
        ["unused"],
        model_info={
            "vision": False,
            "function_calling": True,
            "json_output": False,
            "family": "unknown",
            "structured_output": False,
        },
    )

    def agents() -> list[AssistantAgent]:
        return [AssistantAgent(n, model_client=client, handoffs=["alpha", "beta"]) for n in ("alpha", "beta")]

    builder = DiGraphBuilder()
    a, b = agents()
    builder.add_node(a).add_node(b).add_edge(a, b)
    teams = {
        "next_speaker_index": RoundRobinGroupChat(agents()),
        "previous_speaker": SelectorGroupChat(agents(), model_client=client),
        "current_speaker": Swarm(agents()),
        "ready": GraphFlow([a, b], graph=builder.build()),
    }
    said = [Said("user", "Go"), Said("alpha", "a1")]
    for field_name, team in teams.items():
        state = await rebuild_state(team, said, None)
        [manager] = [s for s in state["agent_states"].values() if "message_thread" in s]
        assert field_name in manager, field_name
        await team.load_state(state)
        saved = await team.save_state()
        thread = next(s for s in saved["agent_states"].values() if "message_thread" in s)["message_thread"]
        assert [(m["source"], m["content"]) for m in thread] == [("user", "Go"), ("alpha", "a1")]
        context = saved["agent_states"]["beta"]["agent_state"]["llm_context"]["messages"]
        assert [(m["type"], m["content"]) for m in context] == [("UserMessage", "Go"), ("UserMessage", "a1")]
        assert [
            m["type"] for m in saved["agent_states"]["alpha"]["agent_state"]["llm_context"]["messages"]
        ] == ["UserMessage", "AssistantMessage"]
    rr = next(
        s
        for s in (await teams["next_speaker_index"].save_state())["agent_states"].values()
        if "message_thread" in s
    )
    assert rr["next_speaker_index"] == 1  # beta speaks after alpha
    graph = next(
        s for s in (await teams["ready"].save_state())["agent_states"].values() if "message_thread" in s
    )
    assert graph["ready"] == ["beta"]


async def test_a_resumed_role_keeps_its_summary_and_does_not_summarise_the_same_turns_again(
    write: Write, store: Store
) -> None:
    extra = "context: {window: 2, summary: true}\n"
    team = write("team.yaml", team_yaml(roles=("alpha", "beta"), max_turns=12, extra=extra))
    lines = {r: [f"{r} point {i}. More detail follows here." for i in range(8)] for r in ("alpha", "beta")}
    script = write("s.yaml", "roles:\n" + "".join(f"  {r}: {json.dumps(v)}\n" for r, v in lines.items()))
    conv = Conversation(team, model=f"scripted:{script}")
    tid = await conv.save_to(store, "dana", "memo")
    await collect(conv.start("Write the memo"))
    checkpoint = await store.latest_checkpoint(tid)
    assert checkpoint is not None and "alpha point 0" in checkpoint.state["summaries"]["beta"]

    again = await Conversation.resume(store, tid, teams_dirs=[team.parent], max_turns=1)
    shown = await collect(again.start("Carry on"))
    assert [(e.source, e.content) for e in shown if isinstance(e, MessageEvent)] == [
        ("alpha", lines["alpha"][6])
    ]
    # The summary came back with the checkpoint: alpha's one turn asked for no summary of turns already in it.
    assert [c.who for c in again.pool.scripts[0].calls] == ["alpha"]
    [call] = again.pool.scripts[0].calls
    prompt = "\n".join(str(m.content) for m in call.messages)
    assert "Summary of the earlier conversation" in prompt and "alpha point 0" in prompt


async def test_a_swarm_that_handed_over_to_the_human_resumes_with_the_role_that_asked(
    write: Write, store: Store
) -> None:
    team = write(
        "team.yaml",
        """
        name: swarm-team
        pattern: swarm
        roles:
          - {name: triage, prompt: Route requests., handoffs: [billing, user]}
          - {name: billing, prompt: Handle billing., handoffs: [triage, user]}
        termination: {max_turns: 6}
        """,
    )
    script = write(
        "s.yaml",
        """
        roles:
          triage:
            - tool: transfer_to_billing
          billing:
            - "Which order is it?"
            - tool: transfer_to_user
            - "Refund for order 1042 is on its way."
        """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    tid = await conv.save_to(store, "dana", "refund")
    first = await collect(conv.start("I was charged twice"))
    assert first[-1].stop_reason == "handoff"

    again = await Conversation.resume(store, tid, teams_dirs=[team.parent])
    shown = await collect(again.start("Order 1042"))
    said = [(e.source, e.content) for e in shown if isinstance(e, MessageEvent)]
    assert said[0] == ("billing", "Refund for order 1042 is on its way.")


async def test_a_pipeline_cut_short_by_its_turn_limit_resumes_at_the_next_stage(
    write: Write, store: Store
) -> None:
    team = write("team.yaml", team_yaml("sequential", roles=("research", "write", "review"), max_turns=2))
    script = write(
        "s.yaml",
        'roles:\n  research: ["facts 1", "facts 2"]\n  write: ["draft 1", "draft 2"]\n  review: ["ok 1", "ok 2"]\n',
    )
    conv = Conversation(team, model=f"scripted:{script}")
    tid = await conv.save_to(store, "dana", "pipeline")
    first = await collect(conv.start("Research it"))
    assert [e.source for e in first if isinstance(e, MessageEvent)] == ["research", "write"]

    again = await Conversation.resume(store, tid, teams_dirs=[team.parent], max_turns=2)
    shown = await collect(again.start("Go on"))
    # The review stage is next, and it finishes the pipeline.
    assert [(e.source, e.content) for e in shown if isinstance(e, MessageEvent)] == [("review", "ok 1")]
    assert shown[-1].stop_reason == "completed"
