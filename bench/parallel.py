"""Parallel patterns: a fan-out and a consensus team whose branches wait on slow models, against the
slowest branch alone and against the branches one after another.

Each branch role has its own scripted model with its own per-reply delay (one branch is slowest); the
fan-out's join answers at once. Every variant is a parley Run with a SQLite store, as `parley run` makes it:
  fanout      `pattern: fanout`, the branches in parallel, then the join
  consensus   `pattern: consensus`, the branches vote in parallel, a majority decides
  slowest     the slowest branch alone (a one-role team)
  one by one  the branches one after another (`pattern: sequential`)
Repetitions alternate the variants; medians are compared.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench._common import Stopwatch, parser, save, table
from parley import Conversation
from parley.events import ChunkEvent, MessageEvent, RunResult
from parley.store import Store

TARGET = 1.2
"""A parallel pattern's wall time may be at most this many times its slowest branch's."""
TASK = "Should we open an office in Lisbon?"
BRANCHES = {"legal": "approve", "finance": "reject", "tech": "approve"}
"""Each branch role and its vote: a 2-1 majority, decided in one round."""
JOIN = "synth"
VARIANTS = ("fanout", "consensus", "slowest", "one_by_one")
LABELS = {
    "fanout": "fanout (3 branches in parallel + join)",
    "consensus": "consensus (3 voters in parallel + tally)",
    "slowest": "(i) slowest branch alone",
    "one_by_one": "(ii) the 3 branches one after another",
}


@dataclass(frozen=True)
class Outcome:
    """One run: its wall time and what a user saw."""

    seconds: float
    said: list[tuple[str, str]]
    """(source, text) of every message, in order."""
    stop_reason: str
    overlapped: bool
    """Whether every branch was still streaming when another had started: they ran at the same time."""


def delays(smoke: bool) -> dict[str, float]:
    """Seconds per reply of each branch; tech is the slowest."""
    scale = 0.4 if smoke else 1.0  # smoke: still long enough that every branch streams before the first ends
    return {"legal": 0.5 * scale, "finance": 0.75 * scale, "tech": 1.0 * scale}


def write_teams(folder: Path, delay: dict[str, float]) -> dict[str, Path]:
    """A script per role (its own delay), and a team file per variant."""
    models = {}
    for role, vote in BRANCHES.items():
        reply = f"{role} has weighed the costs, the risks and the timing of the move.\nVOTE: {vote}"
        models[role] = _script(folder, role, [reply], delay[role])
    models[JOIN] = _script(
        folder, JOIN, ["Two of three branches approve: open the office, watch the costs."], 0.0
    )

    def role(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "description": f"the {name} view",
            "prompt": f"You give the {name} view.",
            "model": models[name],
        }

    slowest = max(delay, key=lambda r: delay[r])
    teams: dict[str, dict[str, Any]] = {
        "fanout": {
            "pattern": "fanout",
            "roles": [role(r) for r in (*BRANCHES, JOIN)],
            "fanout": {"join": JOIN},
        },
        "consensus": {
            "pattern": "consensus",
            "roles": [role(r) for r in BRANCHES],
            "consensus": {"options": ["approve", "reject"], "debate_rounds": 0},
        },
        "slowest": {"pattern": "sequential", "roles": [role(slowest)]},
        "one_by_one": {"pattern": "sequential", "roles": [role(r) for r in BRANCHES]},
    }
    paths = {}
    for variant, team in teams.items():
        path = folder / f"{variant}.yaml"
        body = {"name": f"parallel-{variant}", **team, "termination": {"max_turns": 10}}
        path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
        paths[variant] = path
    return paths


def _script(folder: Path, role: str, replies: list[str], delay_s: float) -> str:
    path = folder / f"{role}.script.yaml"
    path.write_text(yaml.safe_dump({"roles": {role: replies}, "delay_s": delay_s}), encoding="utf-8")
    return f"scripted:{path}"


async def one_run(team: Path, store: Store) -> Outcome:
    """A parley Run of `team`, timed from the conversation's making to its result."""
    with Stopwatch() as t:
        conv = Conversation(team)
        conv.attach(store, await store.create_thread("bench", conv.team.name, conv.model, TASK))
        said: list[tuple[str, str]] = []
        streaming: dict[str, int] = {}
        done: set[str] = set()
        result: RunResult | None = None
        async for ev in conv.start(TASK):
            if isinstance(ev, ChunkEvent) and ev.source in BRANCHES and ev.source not in streaming:
                streaming[ev.source] = len(done)
            elif isinstance(ev, MessageEvent):
                said.append((ev.source, ev.content))
                done.add(ev.source)
            elif isinstance(ev, RunResult):
                result = ev
        await conv.close()
    assert result is not None
    # Every branch started streaming before any branch had finished.
    overlapped = len(streaming) == len(BRANCHES) and not any(streaming.values())
    return Outcome(t.s, said, result.stop_reason, overlapped)


async def measure(smoke: bool, repeats: int) -> tuple[dict[str, float], dict[str, list[Outcome]]]:
    delay = delays(smoke)
    runs: dict[str, list[Outcome]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        folder = Path(tmp)
        teams = write_teams(folder, delay)
        store = await Store.open(f"sqlite+aiosqlite:///{folder / 'parley.db'}")
        try:
            warm = folder / "warm"  # imports and first-call caches are paid once per process
            warm.mkdir()
            for team in write_teams(warm, dict.fromkeys(delay, 0.0)).values():
                await one_run(team, store)
            for _ in range(repeats):
                for variant in VARIANTS:
                    gc.collect()
                    runs[variant].append(await one_run(teams[variant], store))
        finally:
            await store.close()
    return delay, runs


def summarise(delay: dict[str, float], runs: dict[str, list[Outcome]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "delays_s": delay,
        "repeats": len(runs["fanout"]),
        "target_ratio": TARGET,
        "variants": {},
    }
    for variant, outcomes in runs.items():
        last = outcomes[-1]
        out["variants"][variant] = {
            "label": LABELS[variant],
            "seconds": [o.seconds for o in outcomes],
            "median_s": statistics.median(o.seconds for o in outcomes),
            "stop_reason": last.stop_reason,
            "said": [s for s, _ in last.said],
            "final_text": last.said[-1][1] if last.said else "",
            "overlapped": last.overlapped,
        }
    v = out["variants"]
    for pattern in ("fanout", "consensus"):
        v[pattern]["vs_slowest"] = v[pattern]["median_s"] / v["slowest"]["median_s"]
        v[pattern]["vs_one_by_one"] = v[pattern]["median_s"] / v["one_by_one"]["median_s"]
        v[pattern]["target_met"] = v[pattern]["vs_slowest"] <= TARGET
    out["target_met"] = v["fanout"]["target_met"] and v["consensus"]["target_met"]
    return out


def run(smoke: bool) -> dict[str, Any]:
    """Measure, print the table, save the JSON; returns what was saved."""
    delay, runs = asyncio.run(measure(smoke, 1 if smoke else 5))
    data = summarise(delay, runs)
    v = data["variants"]
    rows = []
    for variant in VARIANTS:
        x = v[variant]
        rows.append(
            [
                x["label"],
                x["median_s"],
                x.get("vs_slowest", x["median_s"] / v["slowest"]["median_s"]),
                x.get("vs_one_by_one", x["median_s"] / v["one_by_one"]["median_s"]),
                ("yes" if x["target_met"] else "NO") if "target_met" in x else "",
                len(x["said"]),
            ]
        )
    slow = ", ".join(f"{r} {s:g} s" for r, s in delay.items())
    table(
        ["variant", "wall s", "× slowest", "× one by one", f"≤ {TARGET:g}× slowest", "messages"],
        rows,
        title=f"Parallel patterns (delay per reply: {slow}; median of {data['repeats']} interleaved runs)",
    )
    save("parallel", data, smoke=smoke)
    return data


def main(argv: Sequence[str] | None = None) -> int:
    args = parser((__doc__ or "parallel").splitlines()[0]).parse_args(argv)
    run(args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
