"""Streamed text past AutoGen's runtime: the engine's CPU per message when replies stream a word at a time.

Many conversations run at once in this process (4 roles, round robin, 8 messages each, about 37 words per
reply streamed over 3 s as a model streams tokens: the web load benchmark's conversation), first with every
streamed piece crossing AutoGen's runtime, then with pieces handed straight to the run
(parley/engine/autogen/direct.py), alternating. The figure is the process's CPU time per message; both ways
must show the same messages, and the same number of streamed pieces give or take timing.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import parser, save, table
from parley import Conversation
from parley.engine.autogen import direct

ROLES = ("planner", "researcher", "writer", "reviewer")
TARGET = 0.5
"""Direct pieces should at most halve the engine's CPU per streamed message (issue 18)."""


@dataclass(frozen=True)
class Settings:
    conversations: int
    repeats: int
    reply_s: float
    words: int


FULL = Settings(conversations=30, repeats=3, reply_s=3.0, words=37)
SMOKE = Settings(conversations=2, repeats=1, reply_s=0.4, words=8)


@dataclass(frozen=True)
class Pass:
    direct: bool
    cpu_ms_per_message: float
    messages: int
    pieces: int
    wall_s: float


def write_team(folder: Path, s: Settings) -> tuple[Path, Path]:
    words = " ".join(f"word{i}" for i in range(s.words))
    team = folder / "team.yaml"
    team.write_text(
        "name: bench-streaming\npattern: round_robin\nroles:\n"
        + "".join(f"  - {{name: {r}, prompt: You are the {r}.}}\n" for r in ROLES)
        + "termination: {max_turns: 8}\n"
    )
    script = folder / "script.yaml"
    script.write_text(
        "roles:\n"
        + "".join(f'  {r}: ["{r}: {words}", "{r} again: {words}"]\n' for r in ROLES)
        + f"delay_s: {s.reply_s}\n"
    )
    return team, script


async def one_pass(team: Path, script: Path, s: Settings, straight: bool) -> Pass:
    direct.ENABLED = straight
    cpu0, wall0 = time.process_time(), time.monotonic()

    async def converse() -> tuple[int, int]:
        conv = Conversation(team, model=f"scripted:{script}")
        messages = pieces = 0
        async for ev in conv.start("Plan the launch of a product in three markets"):
            messages += ev.type == "message"
            pieces += ev.type == "chunk"
        return messages, pieces

    counts = await asyncio.gather(*(converse() for _ in range(s.conversations)))
    messages, pieces = sum(c[0] for c in counts), sum(c[1] for c in counts)
    cpu_ms = (time.process_time() - cpu0) * 1000
    return Pass(straight, cpu_ms / max(messages, 1), messages, pieces, time.monotonic() - wall0)


async def measure(s: Settings) -> list[Pass]:
    with tempfile.TemporaryDirectory() as tmp:
        team, script = write_team(Path(tmp), s)
        await one_pass(team, script, s, True)  # warm-up: imports, first model set-up
        passes = []
        try:
            for _ in range(s.repeats):
                for straight in (False, True):
                    passes.append(await one_pass(team, script, s, straight))
        finally:
            direct.ENABLED = True
        return passes


def summarise(passes: Sequence[Pass], s: Settings) -> dict[str, Any]:
    def side(straight: bool) -> dict[str, Any]:
        mine = [p for p in passes if p.direct is straight]
        return {
            "cpu_ms_per_message": [round(p.cpu_ms_per_message, 3) for p in mine],
            "median_cpu_ms_per_message": statistics.median(p.cpu_ms_per_message for p in mine),
            "messages": [p.messages for p in mine],
            "pieces": [p.pieces for p in mine],
            "wall_s": [round(p.wall_s, 2) for p in mine],
        }

    through, straight = side(False), side(True)
    ratio = straight["median_cpu_ms_per_message"] / through["median_cpu_ms_per_message"]
    return {
        "conversations": s.conversations,
        "messages_per_conversation": 8,
        "reply_s": s.reply_s,
        "through_runtime": through,
        "direct": straight,
        "ratio": ratio,
        "target_ratio": TARGET,
        "target_met": ratio <= TARGET,
        "same_messages": through["messages"] == straight["messages"],
    }


def run(smoke: bool) -> dict[str, Any]:
    s = SMOKE if smoke else FULL
    data = summarise(asyncio.run(measure(s)), s)
    rows = [
        [name, data[key]["median_cpu_ms_per_message"], sum(data[key]["pieces"]), sum(data[key]["messages"])]
        for name, key in (("through AutoGen's runtime", "through_runtime"), ("straight to the run", "direct"))
    ]
    table(
        ["streamed pieces", "CPU ms/message", "pieces", "messages"],
        rows,
        title=f"{s.conversations} conversations at once, {s.repeats} passes each way (medians)",
    )
    print(
        f"direct ÷ through the runtime = {data['ratio']:.2f} (target ≤ {TARGET:.2f}: "
        f"{'met' if data['target_met'] else 'missed'}); same messages: {data['same_messages']}"
    )
    return data


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__ or "").parse_args(argv)
    data = run(args.smoke)
    save("streaming", data, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
