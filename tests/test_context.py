"""A role's view of the conversation (the team file's `context:`): bounded, never losing the task or the human."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from _support import collect, team_yaml

from parley import Conversation
from parley.errors import TeamFileError
from parley.events import Event, MessageEvent, UsageEvent
from parley.spec import load_team_file

Write = Callable[[str, str], Path]
ROLES = ("alpha", "beta", "gamma", "delta")


def _script(write: Write, turns: int, *, extra: str = "") -> Path:
    lines = ["roles:"]
    for r in ROLES:
        replies = [f'"{r} turn {i}: point {r}-{i}. More detail follows here."' for i in range(turns)]
        lines.append(f"  {r}: [{', '.join(replies)}]")
    return write("s.yaml", "\n".join(lines) + "\n" + extra)


def _prompts(conv: Conversation, who: str) -> list[str]:
    return ["\n".join(str(m.content) for m in c.messages) for c in conv.pool.scripts[0].calls if c.who == who]


async def test_by_default_each_role_sees_the_task_and_a_bounded_recent_window(write: Write) -> None:
    team = write("team.yaml", team_yaml("round_robin", roles=ROLES, max_turns=16))
    conv = Conversation(team, model=f"scripted:{_script(write, 4)}")
    events = await collect(conv.start("Write the churn memo"))
    assert sum(isinstance(e, MessageEvent) for e in events) == 16
    last = _prompts(conv, "delta")[-1]
    assert "Write the churn memo" in last  # the task, in every call
    assert all("Write the churn memo" in p for who in ROLES for p in _prompts(conv, who))
    assert "gamma turn 3" in last and "alpha turn 3" in last  # the recent turns
    assert "alpha turn 0" not in last and "beta turn 1" not in last  # not the old ones
    # Bounded: the last call's prompt is no bigger than the fifth's, though three times more was said.
    assert len(last) <= len(_prompts(conv, "alpha")[1]) * 1.2


async def test_an_early_human_message_stays_in_view_long_after_the_window_moved_on(write: Write) -> None:
    team = write("team.yaml", team_yaml("round_robin", roles=ROLES, max_turns=14))
    conv = Conversation(team, model=f"scripted:{_script(write, 4)}")
    said = False

    def interject(ev: Event) -> None:
        nonlocal said
        if isinstance(ev, MessageEvent) and ev.source == "alpha" and not said:
            said = True
            conv.say("Only small businesses, please")

    await collect(conv.start("Write the churn memo"), interject)
    last = _prompts(conv, "delta")[-1]
    assert "Only small businesses, please" in last and "Write the churn memo" in last
    assert "alpha turn 0" not in last


async def test_window_all_sends_the_whole_history(write: Write) -> None:
    team = write(
        "team.yaml", team_yaml("round_robin", roles=ROLES, max_turns=12, extra="context: {window: all}\n")
    )
    conv = Conversation(team, model=f"scripted:{_script(write, 3)}")
    await collect(conv.start("Write the churn memo"))
    last = _prompts(conv, "delta")[-1]
    assert all(f"{r} turn 0" in last for r in ROLES[:3])


async def test_a_running_summary_replaces_old_turns_and_its_tokens_are_metered(write: Write) -> None:
    extra = "context: {window: 4, summary: true}\n"
    team = write("team.yaml", team_yaml("round_robin", roles=ROLES, max_turns=16, extra=extra))
    conv = Conversation(team, model=f"scripted:{_script(write, 4)}")
    events = await collect(conv.start("Write the churn memo"))
    last = _prompts(conv, "delta")[-1]
    assert "Summary of the earlier conversation" in last
    assert (
        "point alpha-0" in last
    )  # the first turn lives on in the summary (extractive with the scripted model)
    assert (
        "More detail follows here" not in last.split("Summary of the earlier conversation")[1].split("\n")[0]
    )
    summaries = [c for c in conv.pool.scripts[0].calls if c.who == "summariser"]
    assert summaries, "no summariser call was made"
    by_source = conv.meter.by_source()
    assert by_source["summariser"][0] > 0  # its prompt tokens are on the meter...
    usage = [e for e in events if isinstance(e, UsageEvent)]
    assert usage[-1].total_prompt_tokens == conv.meter.prompt_tokens  # ...and in what the user is shown
    # Roles whose windows drop the same turns share one summary call.
    assert len(summaries) < 16 // 2


async def test_a_role_can_see_more_than_the_team_default(write: Write) -> None:
    team = write(
        "team.yaml",
        team_yaml("round_robin", roles=ROLES, max_turns=12).replace(
            "    prompt: You are delta.\n", "    prompt: You are delta.\n    context: {window: all}\n"
        ),
    )
    conv = Conversation(team, model=f"scripted:{_script(write, 3)}")
    await collect(conv.start("Write the churn memo"))
    assert "alpha turn 0" in _prompts(conv, "delta")[-1]
    assert "alpha turn 0" not in _prompts(conv, "gamma")[-1]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("{window: 0}", "greater than or equal to 1"),
        ("{window: everything}", "window"),
        ("{summary: sometimes}", "summary"),
        ("{windw: 3}", "windw"),
    ],
)
def test_a_bad_context_policy_is_a_clear_error(write: Write, policy: str, message: str) -> None:
    team = write("team.yaml", team_yaml("round_robin", extra=f"context: {policy}\n"))
    with pytest.raises(TeamFileError) as err:
        load_team_file(team)
    text = str(err.value)
    assert "team.yaml:" in text and "context" in text and message in text


async def test_the_view_never_splits_a_tool_call_from_its_results_and_survives_a_checkpoint() -> None:
    from autogen_core import FunctionCall
    from autogen_core.models import (
        AssistantMessage,
        FunctionExecutionResult,
        FunctionExecutionResultMessage,
        UserMessage,
    )

    from parley.engine.autogen.context import PolicyContext, Summariser
    from parley.engine.autogen.models import ModelPool
    from parley.models import Meter

    def call(i: int) -> list[Any]:
        return [
            AssistantMessage(
                content=[FunctionCall(id=f"c{i}", name="sql_query", arguments="{}")], source="me"
            ),
            FunctionExecutionResultMessage(
                content=[FunctionExecutionResult(call_id=f"c{i}", content=f"row {i}", name="sql_query")]
            ),
        ]

    pool = ModelPool(Meter())
    script = Path(__file__).parent / "ui" / "scripts" / "studio.yaml"
    ctx = PolicyContext(2, Summariser(pool.client(f"scripted:{script}", "summariser")))
    history = [UserMessage(content="TASK", source="user")]
    for i in range(6):
        history += [UserMessage(content=f"note {i}. detail.", source="other"), *call(i)]
    history += call(6) + call(7)  # the role's own turn in progress: two tool rounds
    for m in history:
        await ctx.add_message(m)
    view = await ctx.get_messages()
    assert view[0].content == "TASK" and "Summary of the earlier conversation" in str(view[1].content)
    # Every tool result in view follows the call that produced it.
    for before, m in pairwise(view):
        if isinstance(m, FunctionExecutionResultMessage):
            assert isinstance(before, AssistantMessage) and before.content[0].id == m.content[0].call_id  # type: ignore[index,union-attr]
    assert [m.content[0].content for m in view[-3:] if isinstance(m, FunctionExecutionResultMessage)] == [
        "row 6",
        "row 7",
    ]  # type: ignore[index]

    restored = PolicyContext(2, Summariser(pool.client(f"scripted:{script}", "summariser")))
    await restored.load_state(await ctx.save_state())
    calls_before = len(pool.meter.calls)
    assert [m.content for m in await restored.get_messages()] == [m.content for m in view]
    assert len(pool.meter.calls) == calls_before  # the summary came back with the checkpoint, not re-asked


async def test_older_human_messages_beyond_the_latest_ones_go_into_the_summary_not_nowhere() -> None:
    from autogen_core.models import UserMessage

    from parley._window import KEEP_HUMAN
    from parley.engine.autogen.context import PolicyContext, Summariser
    from parley.engine.autogen.models import ModelPool
    from parley.models import Meter

    pool = ModelPool(Meter())
    script = Path(__file__).parent / "ui" / "scripts" / "studio.yaml"
    ctx = PolicyContext(2, Summariser(pool.client(f"scripted:{script}", "summariser")))
    await ctx.add_message(UserMessage(content="TASK", source="user"))
    for i in range(KEEP_HUMAN + 2):
        await ctx.add_message(UserMessage(content=f"note {i}. detail.", source="other"))
        await ctx.add_message(UserMessage(content=f"human wish {i}. please.", source="user"))
        await ctx.get_messages()  # a role speaks between the human's messages
    for i in range(4):
        await ctx.add_message(UserMessage(content=f"late note {i}.", source="other"))
    text = "\n".join(str(m.content) for m in await ctx.get_messages())
    for i in range(KEEP_HUMAN + 2):  # the latest ones verbatim, the older ones in the summary
        assert f"human wish {i}" in text
