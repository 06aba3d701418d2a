"""Nothing lost when the process dies: a run killed with SIGKILL keeps every event it wrote, and
`Conversation.resume` carries it on from its last checkpoint, on SQLite and on PostgreSQL.

Each run lives in a real child process: `parley run` killed from outside while its replies stream,
or `_crashing_run.py`, which kills itself at one precise write (between two turns, after a reply
was generated but before its checkpoint, after the checkpoint but before the message).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from parley import Conversation
from parley.events import HumanMessageEvent, MessageEvent, event_adapter
from parley.store import Store

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("_crashing_run.py")
PARLEY = Path(sys.executable).with_name("parley")
DEADLINE_S = 30.0
ROLES = ("alpha", "beta", "gamma")
SCRIPT = [(role, f"{role} reply {n}") for n in (1, 2, 3) for role in ROLES]
"""The whole conversation, in order: each role speaks three times, round robin."""


@dataclass
class Relay:
    """A round-robin team of three whose scripted replies stream slowly enough to be killed mid-run."""

    dir: Path
    team: Path
    model: str


@pytest.fixture
def relay(write: Callable[[str, str], Path]) -> Relay:
    team = write(
        "relay.yaml",
        """
        name: relay
        pattern: round_robin
        roles:
          - {name: alpha, description: opens each round, prompt: You are alpha.}
          - {name: beta, description: follows alpha, prompt: You are beta.}
          - {name: gamma, description: closes each round, prompt: You are gamma.}
        termination:
          max_turns: 9
    """,
    )
    replies = {role: [text for who, text in SCRIPT if who == role] for role in ROLES}
    script = write("relay-script.yaml", json.dumps({"roles": replies, "delay_s": 0.3}))
    return Relay(dir=team.parent, team=team, model=f"scripted:{script}")


async def stored(store: Store, tid: str) -> list[Any]:
    return [event_adapter.validate_python(r.payload) for r in await store.events(tid)]


def said(events: list[Any]) -> list[tuple[str, str, int]]:
    return [(e.source, e.content, e.turn) for e in events if isinstance(e, MessageEvent)]


def whole(upto: int = len(SCRIPT)) -> list[tuple[str, str, int]]:
    """The scripted conversation's first `upto` messages, numbered by turn."""
    return [(who, text, turn) for turn, (who, text) in enumerate(SCRIPT[:upto], start=1)]


async def resume_to_the_end(store: Store, tid: str, relay: Relay) -> Conversation:
    """Resume the stored conversation in this process and let it run to the end of the script."""
    left = len(SCRIPT) - len(said(await stored(store, tid)))
    conv = await Conversation.resume(store, tid, teams_dirs=[relay.dir], max_turns=left)
    result = await conv.start("Go on").wait()
    assert result.stop_reason == "max_turns", result.detail
    await conv.close()
    return conv


async def crash(
    relay: Relay, db_url: str, tid: str, die: tuple[str, str, int], tmp_path: Path, **plan: Any
) -> None:
    """Run `_crashing_run.py` on the thread until it kills itself around the `die` write."""
    path = tmp_path / "plan.json"
    path.write_text(
        json.dumps(
            {
                "db": db_url,
                "thread": tid,
                "team": str(relay.team),
                "model": relay.model,
                "tasks": ["Write the relay"],
                "die": die,
                **plan,
            }
        ),
        encoding="utf-8",
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(DEADLINE_S):
        out, _ = await child.communicate()
    assert child.returncode == -signal.SIGKILL, (
        f"the child did not crash ({child.returncode}):\n{out.decode()}"
    )


# -- a real `parley run`, killed from outside while it streams -----------------------------------------


async def test_parley_run_killed_mid_run_keeps_all_it_showed_and_resumes_to_the_end(
    relay: Relay, db_url: str
) -> None:
    env = os.environ | {"PARLEY_DATABASE_URL": db_url, "PARLEY_USER": "dana"}
    child = await asyncio.create_subprocess_exec(
        str(PARLEY),
        "run",
        str(relay.team),
        "Write the relay",
        "--model",
        relay.model,
        "--json",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert child.stdout is not None
    shown: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(DEADLINE_S):
            # An event is printed only once the store has it: after four messages the fifth is streaming.
            while sum(e["type"] == "message" for e in shown) < 4:
                line = await child.stdout.readline()
                assert line, f"parley run ended before its fourth message; it printed {shown}"
                shown.append(json.loads(line))
    finally:
        child.kill()
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    async with await Store.open(db_url) as store:
        (thread,) = await store.list_threads("dana")
        rows = await store.events(thread.id)
        # Write-ahead: everything shown before the kill is stored, in the order shown, and more may follow.
        kept = [{k: v for k, v in r.payload.items() if k != "ts"} for r in rows]
        assert kept[: len(shown)] == shown
        events = await stored(store, thread.id)
        k = len(said(events))
        assert 4 <= k < len(SCRIPT) and said(events) == whole(k)  # complete up to the last finished turn
        assert not any(e.type == "result" for e in events)  # the run never ended: it was killed

        resumed = await resume_to_the_end(store, thread.id, relay)
        assert resumed.history[: len(events)] == events  # the restored conversation shows all of it
        assert said(await stored(store, thread.id)) == whole()  # each reply once, in order, to the end


# -- a crash at each write of a turn ------------------------------------------------------------------


@pytest.mark.parametrize(
    "die",
    [
        pytest.param(("after", "message", 3), id="between-turns"),
        pytest.param(("after", "usage", 4), id="reply-made-not-checkpointed"),
        pytest.param(("before", "checkpoint", 4), id="reply-made-nothing-written"),
        pytest.param(("after", "checkpoint", 4), id="checkpoint-and-its-message-commit-together"),
    ],
)
async def test_a_crash_at_any_write_of_a_turn_loses_nothing(
    relay: Relay, db_url: str, die: tuple[str, str, int], tmp_path: Path
) -> None:
    async with await Store.open(db_url) as store:
        tid = await store.create_thread("dana", "relay", relay.model, "Write the relay")
        when, kind, turn = die
        # A call's usage is written with its message, unless the message comes late: then the usage goes alone.
        await crash(relay, db_url, tid, die, tmp_path, **({"usage_waits_s": 0} if kind == "usage" else {}))
        events = await stored(store, tid)
        checkpoint = await store.latest_checkpoint(tid)
        if (when, kind) == ("after", "checkpoint"):
            # A checkpoint is written in one transaction with the message it follows: never one without the other.
            # (Turn 4's, or on a busy machine the next one's, when both turns' writes went in one batch.)
            assert checkpoint is not None and checkpoint.turn >= turn
            assert said(events) == whole(checkpoint.turn)
        else:
            assert checkpoint is None or checkpoint.turn < 4
            if when == "after":  # the write the process died after is stored
                assert (kind, turn) in [(e.type, e.turn) for e in events]
            assert said(events) == whole(3)  # the fourth turn never finished: it is not shown, and redone
        await resume_to_the_end(store, tid, relay)
        assert said(await stored(store, tid)) == whole()


# -- what the human said survives the crash too ------------------------------------------------------


async def test_an_interjection_queued_when_the_process_died_is_delivered_after_resume(
    relay: Relay, db_url: str, tmp_path: Path
) -> None:
    async with await Store.open(db_url) as store:
        tid = await store.create_thread("dana", "relay", relay.model, "Write the relay")
        await crash(
            relay,
            db_url,
            tid,
            ("after", "human_queued", 2),
            tmp_path,
            on_turn={"2": [["say", "Focus on EMEA"]]},
        )
        assert said(await stored(store, tid)) == whole(2)
        resumed = await resume_to_the_end(store, tid, relay)
        events = await stored(store, tid)
        assert [(e.content, e.mode) for e in events if isinstance(e, HumanMessageEvent)] == [
            ("Write the relay", "task"),
            ("Focus on EMEA", "say"),
            ("Go on", "task"),
        ]
        assert said(events) == whole()
        gamma = next(c for c in resumed.pool.scripts[0].calls if c.who == "gamma")
        assert any("Focus on EMEA" in str(m.content) for m in gamma.messages)  # the next speaker heard it


async def test_a_message_carried_over_from_an_earlier_run_is_not_delivered_twice(
    relay: Relay, db_url: str, tmp_path: Path
) -> None:
    async with await Store.open(db_url) as store:
        tid = await store.create_thread("dana", "relay", relay.model, "Write the relay")
        # The first run ends at its third turn with the interjection still waiting; the second delivers it.
        await crash(
            relay,
            db_url,
            tid,
            ("after", "message", 5),
            tmp_path,
            max_turns=3,
            tasks=["Write the relay", "Now the second part"],
            on_turn={"3": [["say", "Mind the budget"]]},
        )
        assert said(await stored(store, tid)) == whole(5)
        await resume_to_the_end(store, tid, relay)
        events = await stored(store, tid)
        assert [e.content for e in events if isinstance(e, HumanMessageEvent)] == [
            "Write the relay",
            "Mind the budget",
            "Now the second part",
            "Go on",
        ]
        assert said(events) == whole()


# -- a reply cut short before a restart is not said again ---------------------------------------------


async def test_a_reply_cut_short_by_stop_is_not_said_again_after_a_restart(relay: Relay, db_url: str) -> None:
    async with await Store.open(db_url) as store:
        conv = Conversation(relay.team, model=relay.model)
        tid = await store.create_thread("dana", "relay", relay.model, "Write the relay")
        conv.attach(store, tid)
        run = conv.start("Write the relay")
        async for ev in run:
            if ev.type == "chunk" and ev.source == "beta":
                run.stop()  # beta's first reply is cut short: the script has used it
        await conv.close()
        assert [e.type for e in await stored(store, tid)][-2:] == ["turn_abandoned", "result"]

        resumed = await Conversation.resume(store, tid, teams_dirs=[relay.dir], max_turns=6)
        assert (await resumed.start("Go on").wait()).stop_reason == "max_turns"
        await resumed.close()
        assert [(who, text) for who, text, _ in said(await stored(store, tid))] == [
            ("alpha", "alpha reply 1"),
            ("beta", "beta reply 2"),
            ("gamma", "gamma reply 1"),
            ("alpha", "alpha reply 2"),
            ("beta", "beta reply 3"),
            ("gamma", "gamma reply 2"),
            ("alpha", "alpha reply 3"),
        ]
