"""A scripted reply that holds until a human speaks (`{text: ..., hold: true}`): the demo and the browser tests
show interjecting, Interrupt and Stop without racing a clock. No sleeps: each step waits on the run's events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from _support import team_yaml

from parley import Conversation, Run
from parley.events import ChunkEvent, Event, HumanMessageEvent, MessageEvent, RunResult, TurnAbandonedEvent

Write = Callable[[str, str], Path]

SCRIPT = """
roles:
  alpha:
    - {text: "Alpha holds here until you speak", hold: true}
    - "Alpha again"
  beta: ["Beta one", "Beta two"]
"""


def _conv(write: Write) -> Conversation:
    team = write("team.yaml", team_yaml(max_turns=3))
    return Conversation(team, model=f"scripted:{write('script.yaml', SCRIPT)}")


async def _until_held(events: asyncio.Queue[Event], seen: list[Event]) -> None:
    """Take events until alpha's first word is out, then let the loop run on: nothing more may come."""
    while not (seen and isinstance(seen[-1], ChunkEvent)):
        seen.append(await events.get())
    for _ in range(200):  # many turns of the event loop, no clock: an unheld reply would be done by now
        await asyncio.sleep(0)
    assert events.empty(), f"the held reply went on without a human: {events.get_nowait()}"


def _pump(run: Run) -> tuple[asyncio.Queue[Event], asyncio.Task[None]]:
    queue: asyncio.Queue[Event] = asyncio.Queue()

    async def pump() -> None:
        async for ev in run:
            queue.put_nowait(ev)

    return queue, asyncio.get_running_loop().create_task(pump())


async def _rest(queue: asyncio.Queue[Event], task: asyncio.Task[None]) -> list[Event]:
    await task
    return [queue.get_nowait() for _ in range(queue.qsize())]


async def test_a_held_reply_finishes_once_the_human_speaks_and_the_message_joins_after_that_turn(
    write: Write,
) -> None:
    conv = _conv(write)
    run = conv.start("Plan the launch")
    queue, task = _pump(run)
    seen: list[Event] = []
    await _until_held(queue, seen)
    run.say("focus on EMEA")
    events = seen + await _rest(queue, task)
    order = [(e.source, e.content) for e in events if isinstance(e, MessageEvent | HumanMessageEvent)]
    assert order == [
        ("user", "Plan the launch"),
        ("alpha", "Alpha holds here until you speak"),  # its whole text: the turn was not cut
        ("user", "focus on EMEA"),
        ("beta", "Beta one"),
        ("alpha", "Alpha again"),
    ]


async def test_stop_ends_a_held_reply_at_once(write: Write) -> None:
    conv = _conv(write)
    run = conv.start("Plan the launch")
    queue, task = _pump(run)
    await _until_held(queue, [])
    run.stop()
    events = await _rest(queue, task)
    assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "stopped"
    assert [e.source for e in events if isinstance(e, TurnAbandonedEvent)] == ["alpha"]
    assert not [e for e in events if isinstance(e, MessageEvent)]


async def test_interrupt_cuts_a_held_reply_and_the_message_joins_at_once(write: Write) -> None:
    conv = _conv(write)
    run = conv.start("Plan the launch")
    queue, task = _pump(run)
    await _until_held(queue, [])
    run.interrupt("make it a checklist")
    events = await _rest(queue, task)
    assert [e.source for e in events if isinstance(e, TurnAbandonedEvent)] == ["alpha"]
    said = [(e.source, e.content) for e in events if isinstance(e, MessageEvent | HumanMessageEvent)]
    assert said[0] == ("user", "make it a checklist")
    assert ("alpha", "Alpha holds here until you speak") not in said
