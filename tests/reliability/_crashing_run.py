"""A process that runs a conversation on a store and SIGKILLs itself at one chosen write.

Run as `python _crashing_run.py PLAN.json`. The plan (a JSON object):

- `db`, `thread`, `team`, `model`: the store URL, the thread to write to, the team file, the model string;
- `tasks`: the runs to start one after another on the conversation; `max_turns`: their limit (optional);
- `on_turn`: `{"2": [["say", "text"], ["stop"]]}`, what the human does once the message of that turn is shown;
- `die`: `["before" | "after", EVENT_TYPE | "checkpoint", TURN]`, the write around which the process kills itself;
- `usage_waits_s`: how long a call's usage waits for its message to share its write (optional; 0 writes it alone,
  as a call whose message comes late has it written).

A crash in a test is a real `kill -9` of this process: no `finally`, no flush, no goodbye.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from parley import Conversation, _publish
from parley.events import Event, MessageEvent
from parley.run import Run
from parley.store import Store


def _crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingStore(Store):
    """The real store, killing its own process just before or after one given write."""

    die: tuple[str, str, int] | None = None

    def _at(self, moment: str, kind: str, turn: object) -> None:
        if self.die == (moment, kind, turn):
            _crash()
        # A batch carries one checkpoint, its last turn's: on a busy machine the turn named may share a batch with
        # the next and have none of its own. The first checkpoint at or past it stands in.
        wanted = self.die or ("", "", 0)
        if (
            (moment, kind) == wanted[:2] == (moment, "checkpoint")
            and isinstance(turn, int)
            and turn >= wanted[2]
        ):
            _crash()

    async def append_batch(
        self,
        tid: str,
        new_events: Sequence[tuple[str, Mapping[str, Any]]],
        audits: Sequence[tuple[str, str, Mapping[str, Any]]] = (),
        checkpoint: tuple[int, Mapping[str, Any], Sequence[str]] | None = None,
        *,
        fence: Any = None,
    ) -> list[int]:
        # A run writes what piled up in one transaction: dying "before" a write means before that
        # transaction, "after" means once it has committed.
        writes = [(kind, payload.get("turn")) for kind, payload in new_events]
        writes += [("checkpoint", checkpoint[0])] if checkpoint is not None else []
        for kind, turn in writes:
            self._at("before", kind, turn)
        seqs = await super().append_batch(tid, new_events, audits, checkpoint, fence=fence)
        for kind, turn in writes:
            self._at("after", kind, turn)
        return seqs


async def main(plan: dict[str, Any]) -> None:
    store = await CrashingStore.open(plan["db"])
    assert isinstance(store, CrashingStore)  # Store.open makes the class it is called on
    when, kind, turn = plan["die"]
    if "usage_waits_s" in plan:
        _publish.USAGE_WAITS_S = float(plan["usage_waits_s"])
    store.die = (when, kind, int(turn))
    conv = Conversation(Path(plan["team"]), model=plan["model"], max_turns=plan.get("max_turns"))
    conv.attach(store, plan["thread"])
    actions: dict[int, list[list[str]]] = {int(k): v for k, v in plan.get("on_turn", {}).items()}

    runs: list[Run] = []

    def human(ev: Event) -> None:
        for action, *text in actions.pop(ev.turn, []) if isinstance(ev, MessageEvent) else []:
            if action == "say":
                conv.say(text[0])
            elif action == "stop":
                runs[-1].stop()

    for task in plan["tasks"]:
        runs.append(conv.start(task))
        async for ev in runs[-1]:
            human(ev)
    sys.exit("the run ended before the chosen write: the plan never crashed")


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
