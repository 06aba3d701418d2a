"""Concurrent users: 50 conversations at once on one process and one store keep their messages
separate and complete."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from _support import collect, team_yaml

from parley import Conversation
from parley.events import MessageEvent, RunResult, event_adapter
from parley.store import Store

Write = Callable[[str, str], Path]
USERS = 50


async def test_fifty_conversations_at_once_stay_separate_and_complete(write: Write, store: Store) -> None:
    team = write("team.yaml", team_yaml(roles=("alpha", "beta"), max_turns=4))
    convs = []
    for i in range(USERS):
        script = write(
            f"s{i}.yaml",
            f"""
            roles:
              alpha: ["alpha for user {i} (1)", "alpha for user {i} (2)"]
              beta: ["beta for user {i} (1)", "beta for user {i} (2)"]
            delay_s: 0.05
        """,
        )
        conv = Conversation(team, model=f"scripted:{script}")
        conv.attach(store, await store.create_thread(f"user{i}", conv.team.name, conv.model, f"task {i}"))
        convs.append(conv)

    async def one(i: int, conv: Conversation) -> list[object]:
        run = conv.start(f"Task of user {i}")
        return await collect(
            run,
            lambda ev: (
                run.say(f"note from user {i}") if isinstance(ev, MessageEvent) and ev.turn == 1 else None
            ),
        )

    shown = await asyncio.gather(*(one(i, c) for i, c in enumerate(convs)))
    for i, (conv, events) in enumerate(zip(convs, shown, strict=True)):
        result = events[-1]
        assert isinstance(result, RunResult) and result.stop_reason == "max_turns" and result.turns == 4
        said = [e.content for e in events if isinstance(e, MessageEvent)]
        assert said == [
            f"alpha for user {i} (1)",
            f"beta for user {i} (1)",
            f"alpha for user {i} (2)",
            f"beta for user {i} (2)",
        ]
        assert conv.thread_id is not None
        stored = [event_adapter.validate_python(r.payload) for r in await store.events(conv.thread_id)]
        assert [
            e for e in events if e.type != "chunk"
        ] == stored  # complete, in order, nothing from anyone else
        spoken = [e.content for e in stored if e.type in ("message", "human_message", "human_queued")]
        assert all(f"user {i} " in text or text.endswith(f"user {i}") for text in spoken)
        # The note typed after turn 1 joined the conversation, or (if the team had already finished) is kept
        # for the next run: never lost, never in someone else's conversation.
        delivered = [e.content for e in stored if e.type == "human_message" and e.content.startswith("note")]
        assert delivered + result.undelivered == [f"note from user {i}"]
    owners = {(await store.get_thread(c.thread_id)).owner for c in convs if c.thread_id}  # type: ignore[union-attr]
    assert len(owners) == USERS
