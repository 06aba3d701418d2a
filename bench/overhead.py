"""Framework overhead: one scripted round-robin conversation through bare AutoGen and through a parley Run.

Every variant gets the same replies from a model that answers at once, so what is left is the framework:
(a) AutoGen's RoundRobinGroupChat of AssistantAgents on autogen_ext's ReplayChatCompletionClient;
(b) a parley Run of the same team from a team file, `scripted:` model, meter, events and a SQLite store,
the way `parley run` and the web chat run it, on parley's default context policy; (c) the same Run without
a store (`parley run --no-save`), which splits (b)'s cost between the engine and the store; (d) (b) with
`context: {window: all}`, so that every prompt is the very one bare AutoGen sends; (e) bare AutoGen without
streaming, the least work AutoGen can do and the baseline of the ratios. Repetitions alternate a b c a b c...; medians
are compared. CPU seconds are shown too: on a busy machine they move less than wall time.

Growth: each run notes when every message arrives, so the cost of the messages around message 50 and around the
last one can be compared. parley's added CPU cost per message there (b minus e, over 40 messages) should
stay flat: nothing parley does per message may grow with the conversation.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import TextMessage
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_ext.models.replay import ReplayChatCompletionClient
from sqlalchemy import func, select

from bench._common import Stopwatch, parser, save, table
from parley import Conversation
from parley._proc import freeze_startup_objects
from parley.events import ChunkEvent, MessageEvent, RunResult
from parley.store import Store
from parley.store import _schema as schema

ROLES = ("planner", "researcher", "critic", "writer")
TASK = "Plan the launch of a product in three markets"
TARGET = 1.5
"""parley's wall time (with the store) may be at most this many times AutoGen's leanest run's."""
GROWTH_TARGET = 1.2
"""parley's added cost per message late in a long run may be at most this many times that at message 50."""
EARLY = 50
"""The message whose cost the last message's is compared with."""
WINDOW = 40
"""Messages over which a per-message cost is averaged (the ones up to and including the message named)."""
VARIANTS = ("bare", "bare_no_stream", "parley", "parley_no_store", "parley_all")
LABELS = {
    "bare": "(a) bare AutoGen: RoundRobinGroupChat + replay",
    "bare_no_stream": "(e) (a) without streaming: AutoGen's leanest",
    "parley": "(b) parley Run: scripted, meter, events, SQLite",
    "parley_no_store": "(c) parley Run without a store (--no-save)",
    "parley_all": "(d) (b) seeing the whole history, as AutoGen",
}
_MODEL_INFO: Any = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    "structured_output": True,
}


@dataclass(frozen=True)
class Side:
    """One repetition of one variant."""

    seconds: float
    cpu_s: float
    said: list[tuple[str, str]]
    """(role, text) of every agent message, in order."""
    shown: int = 0
    """Events the run showed, chunks aside (what the store should hold)."""
    stored: int = 0
    """Events the store holds for the run's thread."""
    checkpoints: int = 0
    """Checkpoints the store holds for it (the newest of each batch the writer writes is kept)."""
    at: tuple[float, ...] = ()
    """The process's CPU seconds when each agent message arrived (CPU time: other work on the machine moves it
    far less than wall time, and a window of it is what the messages there cost)."""


def replies(messages: int) -> dict[str, list[str]]:
    """Each role's replies, in order: distinct, about 40 words each (a short chat answer)."""
    out: dict[str, list[str]] = {r: [] for r in ROLES}
    for i in range(messages):
        role = ROLES[i % len(ROLES)]
        out[role].append(
            f"{role} on turn {i + 1}: the figures for region {i % 7} look steady, margins hold at "
            f"{20 + i % 9} percent, and the next step is to check the supplier terms and the launch "
            "calendar before we commit the budget for the quarter."
        )
    return out


def _prompt(role: str) -> str:
    return f"You are the {role}. Answer in a few sentences and leave the rest to the others."


async def bare(script: dict[str, list[str]], messages: int, *, stream: bool = True) -> Side:
    """(a) AutoGen alone, streaming word by word as the replay model does; (e) without streaming, its leanest."""
    cpu0 = time.process_time()
    with Stopwatch() as t:
        t0 = time.process_time()
        agents = [
            AssistantAgent(
                role,
                model_client=ReplayChatCompletionClient(script[role], model_info=_MODEL_INFO),
                system_message=_prompt(role),
                description=f"the {role}",
                model_client_stream=stream,
            )
            for role in ROLES
        ]
        team = RoundRobinGroupChat(
            agents, termination_condition=MaxMessageTermination(messages + 1)
        )  # + the task
        result: TaskResult | None = None
        at: list[float] = []
        async for item in team.run_stream(task=TASK):
            if isinstance(item, TaskResult):
                result = item
            elif isinstance(item, TextMessage) and item.source != "user":
                at.append(time.process_time() - t0)
    cpu = time.process_time() - cpu0
    assert result is not None
    said = [
        (m.source, m.content) for m in result.messages if isinstance(m, TextMessage) and m.source != "user"
    ]
    return Side(t.s, cpu, said, at=tuple(at))


def write_team(
    folder: Path,
    script: dict[str, list[str]],
    messages: int,
    *,
    delay_s: float = 0.0,
    whole_history: bool = False,
) -> tuple[Path, Path]:
    """The team file and the script a user would write for (b) and (c); `delay_s` per reply."""
    folder.mkdir(parents=True, exist_ok=True)
    team: dict[str, Any] = {
        "name": "overhead",
        "pattern": "round_robin",
        "roles": [{"name": r, "description": f"the {r}", "prompt": _prompt(r)} for r in ROLES],
        "termination": {"max_turns": messages},
    }
    if whole_history:
        team["context"] = {"window": "all"}  # as bare AutoGen's agents see it: the same prompts
    team_path = folder / "team.yaml"
    team_path.write_text(yaml.safe_dump(team, sort_keys=False), encoding="utf-8")
    script_path = folder / "script.yaml"
    script_path.write_text(
        yaml.safe_dump({"roles": script, "delay_s": delay_s}, sort_keys=False), encoding="utf-8"
    )
    return team_path, script_path


async def parley_run(team: Path, script: Path, db: Path | None) -> Side:
    """(b) with a store at `db`, (c) without one. The store is opened before the clock starts (a server
    opens it once); making the thread and the conversation are timed."""
    store = await Store.open(f"sqlite+aiosqlite:///{db}") if db is not None else None
    try:
        cpu0 = time.process_time()
        with Stopwatch() as t:
            t0 = time.process_time()
            conv = Conversation(team, model=f"scripted:{script}")
            if store is not None:
                conv.attach(store, await store.create_thread("bench", conv.team.name, conv.model, TASK))
            said: list[tuple[str, str]] = []
            at: list[float] = []
            shown = 0
            result: RunResult | None = None
            async for ev in conv.start(TASK):
                shown += not isinstance(ev, ChunkEvent)
                if isinstance(ev, MessageEvent):
                    said.append((ev.source, ev.content))
                    at.append(time.process_time() - t0)
                elif isinstance(ev, RunResult):
                    result = ev
            await conv.close()
        cpu = time.process_time() - cpu0
        assert result is not None and result.stop_reason == "max_turns", result
        stored = checkpoints = 0
        if store is not None and conv.thread_id is not None:
            stored = len(await store.events(conv.thread_id))
            checkpoints = await _checkpoints(store, conv.thread_id)
    finally:
        if store is not None:
            await store.close()
    return Side(t.s, cpu, said, shown, stored, checkpoints, tuple(at))


async def _checkpoints(store: Store, tid: str) -> int:
    # The Store reads back only the latest checkpoint; count them on its own engine.
    async with store._engine.connect() as conn:
        where = schema.checkpoints.c.thread_id == tid
        return int(await conn.scalar(select(func.count()).select_from(schema.checkpoints).where(where)) or 0)


async def measure(messages: int, repeats: int) -> dict[str, list[Side]]:
    """Every variant `repeats` times, interleaved, after one warm-up each."""
    script = replies(messages)
    sides: dict[str, list[Side]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        folder = Path(tmp)
        team, script_path = write_team(folder / "team", script, messages)
        team_all, _ = write_team(folder / "team-all", script, messages, whole_history=True)
        # Imports and first-call caches are paid once per process: not overhead.
        warm = write_team(folder / "warm", replies(len(ROLES)), len(ROLES))
        await bare(replies(len(ROLES)), len(ROLES))
        await parley_run(*warm, folder / "warm.db")
        freeze_startup_objects()  # as `parley run`, `parley eval` and the web chat do once they are loaded
        for i in range(repeats):
            for variant in VARIANTS:
                gc.collect()
                if variant == "bare":
                    side = await bare(script, messages)
                elif variant == "bare_no_stream":
                    side = await bare(script, messages, stream=False)
                elif variant == "parley_all":
                    side = await parley_run(team_all, script_path, folder / f"run{i}-all.db")
                else:
                    side = await parley_run(
                        team, script_path, folder / f"run{i}.db" if variant == "parley" else None
                    )
                sides[variant].append(side)
    return sides


def summarise(messages: int, sides: dict[str, list[Side]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "messages": messages,
        "agents": len(ROLES),
        "repeats": len(sides["bare"]),
        "target_ratio": TARGET,
        "variants": {},
    }
    for variant, runs in sides.items():
        wall = statistics.median(s.seconds for s in runs)
        last = runs[-1]
        out["variants"][variant] = {
            "label": LABELS[variant],
            "seconds": [s.seconds for s in runs],
            "cpu_seconds": [s.cpu_s for s in runs],
            "median_s": wall,
            "median_cpu_s": statistics.median(s.cpu_s for s in runs),
            "ms_per_message": 1000 * wall / messages,
            "messages": len(last.said),
            "final_text": last.said[-1][1] if last.said else "",
            "shown_events": last.shown,
            "stored_events": last.stored,
            "checkpoints": last.checkpoints,
        }
    v = out["variants"]
    # The strictest baseline: AutoGen without streaming does the least work. (parley streams; it passes text
    # on at most every 0.1 s, so an instant reply is one piece where the replay model sends one per word.)
    base = v["bare_no_stream"]
    v["bare"]["ratio"] = v["bare"]["median_s"] / base["median_s"]
    v["bare"]["cpu_ratio"] = v["bare"]["median_cpu_s"] / base["median_cpu_s"]
    for variant in ("parley", "parley_no_store", "parley_all"):
        v[variant]["ratio_vs_streaming_autogen"] = v[variant]["median_s"] / v["bare"]["median_s"]
        v[variant]["ratio"] = v[variant]["median_s"] / base["median_s"]
        v[variant]["cpu_ratio"] = v[variant]["median_cpu_s"] / base["median_cpu_s"]
        v[variant]["added_ms_per_message"] = v[variant]["ms_per_message"] - base["ms_per_message"]
    out["same_conversation"] = all(runs[-1].said == sides["bare"][-1].said for runs in sides.values())
    out["baseline"] = "bare_no_stream"
    out["ratio"] = v["parley"]["ratio"]
    # An upper bound for a model that takes a second per reply (the store writes while the model works).
    out["ratio_if_reply_takes_1s"] = (v["parley"]["median_s"] + messages) / (base["median_s"] + messages)
    out["target_met"] = out["ratio"] <= TARGET
    if messages >= 2 * EARLY:
        early, late = added_per_message(sides, EARLY), added_per_message(sides, messages)
        own_early, own_late = per_message(sides["parley"], EARLY), per_message(sides["parley"], messages)
        out["growth"] = {
            "early_message": EARLY,
            "late_message": messages,
            "window": WINDOW,
            "added_ms_per_message_early": early,
            "added_ms_per_message_late": late,
            "parley_ms_per_message_early": own_early,
            "parley_ms_per_message_late": own_late,
            # AutoGen's own cost per message grows with the conversation (its agents see the whole history), so
            # parley's added cost can shrink below zero late in a run: judge parley's own cost, the stricter test.
            "ratio": own_late / own_early,
            "added_ratio": late / early if early > 0 else None,
            "target": GROWTH_TARGET,
        }
        out["growth"]["target_met"] = out["growth"]["ratio"] <= GROWTH_TARGET
    return out


def _ms_per_message(side: Side, upto: int) -> float:
    """The mean CPU time between messages over the WINDOW messages up to message `upto` (1-based), in ms."""
    at = side.at
    return 1000 * (at[upto - 1] - at[upto - 1 - WINDOW]) / WINDOW


def per_message(runs: Sequence[Side], upto: int) -> float:
    """A variant's CPU ms per message around message `upto`: the median over its runs."""
    return statistics.median(_ms_per_message(s, upto) for s in runs)


def added_per_message(sides: dict[str, list[Side]], upto: int) -> float:
    """parley's (b) cost per message around message `upto`, less AutoGen's leanest (e) there."""
    return per_message(sides["parley"], upto) - per_message(sides["bare_no_stream"], upto)


def run(smoke: bool) -> dict[str, Any]:
    """Measure, print the table, save the JSON; returns what was saved."""
    logging.getLogger("autogen_core").setLevel(logging.CRITICAL)  # as `parley run` and the web chat do
    messages, repeats = (2 * EARLY, 1) if smoke else (400, 5)
    data = summarise(messages, asyncio.run(measure(messages, repeats)))
    rows = [
        [
            v["label"],
            v["median_s"],
            v["ms_per_message"],
            v.get("added_ms_per_message", 0.0),
            v.get("ratio", 1.0),
            v["median_cpu_s"],
            v.get("cpu_ratio", 1.0),
            v["messages"],
        ]
        for v in data["variants"].values()
    ]
    table(
        ["variant", "wall s", "ms/msg", "+ms/msg", "÷ (e)", "cpu s", "cpu ÷ (e)", "messages"],
        rows,
        title=f"Framework overhead: {messages} messages, {len(ROLES)} agents, round robin, "
        f"median of {repeats} interleaved runs",
    )
    verdict = "met" if data["target_met"] else "missed"
    print(
        f"parley ÷ AutoGen without streaming = {data['ratio']:.2f} (target ≤ {TARGET:.2f}: {verdict}); "
        f"÷ AutoGen streaming = {data['variants']['parley']['ratio_vs_streaming_autogen']:.2f}; "
        f"same conversation in every variant: {data['same_conversation']}; "
        f"checkpoints stored by (b): {data['variants']['parley']['checkpoints']} of {messages} turns"
    )
    print(f"if each reply took 1 s, parley/bare would be at most {data['ratio_if_reply_takes_1s']:.3f}")
    growth = data.get("growth")
    if growth is not None:
        verdict = "met" if growth["target_met"] else "missed"
        print(
            f"CPU per message of (b): {growth['parley_ms_per_message_early']:.3f} ms at message {EARLY}, "
            f"{growth['parley_ms_per_message_late']:.3f} ms at message {messages}: ratio {growth['ratio']:.2f} "
            f"(target ≤ {GROWTH_TARGET:.2f}: {verdict}); added to (e): "
            f"{growth['added_ms_per_message_early']:.3f} ms and {growth['added_ms_per_message_late']:.3f} ms"
        )
    save("overhead", data, smoke=smoke)
    return data


def main(argv: Sequence[str] | None = None) -> int:
    args = parser((__doc__ or "overhead").splitlines()[0]).parse_args(argv)
    run(args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
