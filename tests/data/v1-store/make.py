"""Makes store.sqlite3: conversations stored by parley before checkpoints were versioned (raw `save_state`).

Run with the code of that time (commit 4de56e4), from a copy of it:
    git archive 4de56e4 | tar -x -C /tmp/v1 && cp -r tests/data /tmp/v1/tests/
    cd /tmp/v1 && PYTHONPATH=. /path/to/.venv/bin/python tests/data/v1-store/make.py
then copy /tmp/v1/tests/data/v1-store/store.sqlite3 back here.
The migration test (tests/test_checkpoints.py) opens these threads with the current code, resumes and continues them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from parley import Conversation
from parley.events import ChunkEvent, Event
from parley.store import Store

HERE = Path("tests/data/v1-store")
THREADS = {
    "round_robin": "00000000-0000-4000-8000-000000000001",
    "selector": "00000000-0000-4000-8000-000000000002",
    "sequential": "00000000-0000-4000-8000-000000000003",
    "stopped": "00000000-0000-4000-8000-000000000004",
    "died": "00000000-0000-4000-8000-000000000005",
}
"""Which conversation is which thread."""


async def _one(store: Store, name: str, team: str, script: str, task: str, steer: str | None = None) -> None:
    conv = Conversation(HERE / team, model=f"scripted:{HERE / script}")
    await conv.save_to(store, "dana", name, thread_id=THREADS[name])
    run = conv.start(task)
    done = False
    async for ev in run:
        if isinstance(ev, ChunkEvent) and ev.source == "beta" and not done and steer is not None:
            done = True
            run.stop() if steer == "stop" else run.say(steer)
    print(name, run.result)


async def _dies(target: Path) -> None:
    """In a child process: a round robin whose process dies (no clean-up at all) while gamma's second turn streams."""
    store = await Store.open(f"sqlite+aiosqlite:///{target}")
    conv = Conversation(HERE / "died.yaml", model=f"scripted:{HERE / 'died-script.yaml'}")
    await conv.save_to(store, "dana", "died", thread_id=THREADS["died"])
    run = conv.start("Draft the plan")
    said = 0
    async for ev in run:
        said += ev.type == "message"
        if isinstance(ev, ChunkEvent) and ev.source == "gamma" and said >= 5:
            os._exit(9)


def _said(ev: Event) -> str:
    return f"{ev.type} {ev.source}: {getattr(ev, 'content', '')}"


async def main() -> None:
    target = HERE / "store.sqlite3"
    target.unlink(missing_ok=True)
    store = await Store.open(f"sqlite+aiosqlite:///{target}")
    await _one(store, "round_robin", "rr.yaml", "rr-script.yaml", "Plan the launch", steer="focus on EMEA")
    await _one(store, "selector", "sel.yaml", "sel-script.yaml", "Write a brief")
    await _one(store, "sequential", "seq.yaml", "seq-script.yaml", "Research the market")
    await _one(store, "stopped", "stop.yaml", "stop-script.yaml", "Go", steer="stop")
    await store.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["die"]:
        asyncio.run(_dies(HERE / "store.sqlite3"))
    else:
        asyncio.run(main())
        child = subprocess.run([sys.executable, __file__, "die"], check=False)  # its process dies mid-turn
        assert child.returncode == 9, child
