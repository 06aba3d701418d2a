"""Store throughput: the events and checkpoints of a run written through parley's Store, against plain
inserts of the same rows, on SQLite (a temporary file) and PostgreSQL (a scratch database made and dropped).

The writes are recorded from a real scripted run (what its writer stores, batch by batch: the events that
piled up while it was busy, their audit rows, the newest checkpoint), then replayed:
  store     Store.append_batch, one call per recorded batch, as Run does
  plain     the same rows as plain INSERTs on the same engine and tables, one transaction per row
  batched   the same rows as plain INSERTs, one transaction per recorded batch (the same transactions)
Repetitions alternate the three; medians are compared. events/s counts event rows; the time includes the
checkpoints and audit rows written with them.

Growth: the bytes a run stores (events, audit rows and checkpoints, as JSON) per agent message, for a run of 50
messages and one of 400. Flat means linear in the conversation's length: nothing stored per message may grow with it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bench._common import Stopwatch, parser, save, table
from bench.overhead import ROLES, TASK, replies, write_team
from parley import Conversation
from parley.events import RunResult
from parley.store import Store
from parley.store._schema import audit, checkpoints, events, now
from parley.store._urls import normalise_url, redact

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
"""Where to make the scratch database (PARLEY_TEST_PG_URL, as the tests use, overrides)."""
WAYS = ("store", "plain", "batched")
GROWTH = (50, 400)
"""The run lengths whose stored bytes per message are compared."""
GROWTH_TARGET = 1.1
"""Bytes per message of the longer run may be at most this many times the shorter's."""
LABELS = {
    "store": "parley Store",
    "plain": "plain INSERT, a transaction per row",
    "batched": "plain INSERT, the Store's transactions",
}


@dataclass(frozen=True)
class Write:
    """One call a run's writer made: an event, an audit row or a checkpoint."""

    kind: str
    """`event`, `audit` or `checkpoint`."""
    args: tuple[Any, ...]
    batch: int = 0
    """Which of the writer's transactions it was in."""


class Recorder:
    """Stands in for the Store during the recording run, keeping every write it is asked for."""

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.batches = 0

    async def append_batch(
        self,
        tid: str,
        new_events: Sequence[tuple[str, Mapping[str, Any]]],
        audits: Sequence[tuple[str, str, Mapping[str, Any]]] = (),
        checkpoint: tuple[int, Mapping[str, Any], Sequence[str]] | None = None,
        *,
        fence: object = None,  # a cluster's lease: no cluster here
    ) -> list[int]:
        self.batches += 1
        self.writes += [Write("event", (kind, dict(payload)), self.batches) for kind, payload in new_events]
        self.writes += [Write("audit", (a, b, dict(d)), self.batches) for a, b, d in audits]
        if checkpoint is not None:
            turn, state, pending = checkpoint
            self.writes.append(Write("checkpoint", (turn, dict(state), list(pending)), self.batches))
        first = sum(w.kind == "event" for w in self.writes) - len(new_events) + 1
        return list(range(first, first + len(new_events)))


async def record(messages: int) -> list[Write]:
    """The writes of a scripted round-robin run of `messages` agent messages (bench/overhead.py's team).

    The model takes 20 ms per reply: at zero latency the team runs ahead of the run, which then trusts
    almost no checkpoint; with a real model each agent message gets its checkpoint, as here.
    """
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        team, script = write_team(Path(tmp), replies(messages), messages, delay_s=0.02)
        conv = Conversation(team, model=f"scripted:{script}")
        conv.attach(recorder, "recording")  # type: ignore[arg-type]  # Run only calls append_batch
        result = None
        async for ev in conv.start(TASK):
            if isinstance(ev, RunResult):
                result = ev
        await conv.close()
    assert result is not None and result.stop_reason == "max_turns", result
    return recorder.writes


# -- the three ways to write ---------------------------------------------------------------------


def _batches(writes: Sequence[Write]) -> list[list[Write]]:
    out: list[list[Write]] = []
    for w in writes:
        if not out or out[-1][0].batch != w.batch:
            out.append([])
        out[-1].append(w)
    return out


async def through_store(store: Store, tid: str, writes: Sequence[Write]) -> None:
    for batch in _batches(writes):
        checkpoint = next((w.args for w in batch if w.kind == "checkpoint"), None)
        await store.append_batch(
            tid,
            [w.args for w in batch if w.kind == "event"],
            [w.args for w in batch if w.kind == "audit"],
            checkpoint,
        )


def _row(tid: str, w: Write, seq: int) -> tuple[Any, dict[str, Any]]:
    at = now()
    if w.kind == "event":
        event_type, payload = w.args
        return events, {
            "thread_id": tid,
            "seq": seq,
            "type": event_type,
            "payload": payload,
            "created_at": at,
        }
    if w.kind == "audit":
        actor, action, detail = w.args
        return audit, {"thread_id": tid, "actor": actor, "action": action, "detail": detail, "created_at": at}
    turn, state, pending = w.args
    return checkpoints, {"thread_id": tid, "turn": turn, "state": state, "pending": pending, "created_at": at}


async def plain(engine: AsyncEngine, tid: str, writes: Sequence[Write]) -> None:
    seq = 0
    for w in writes:
        seq += w.kind == "event"
        table_, row = _row(tid, w, seq)
        async with engine.begin() as conn:
            await conn.execute(insert(table_).values(**row))


async def batched(engine: AsyncEngine, tid: str, writes: Sequence[Write]) -> None:
    """The Store's transactions (one per recorded batch), as plain multi-row INSERTs."""
    seq = 0
    for batch in _batches(writes):
        rows = []
        for w in batch:
            seq += w.kind == "event"
            rows.append(_row(tid, w, seq))
        async with engine.begin() as conn:
            await _insert_many(conn, rows)


async def _insert_many(conn: AsyncConnection, rows: list[tuple[Any, dict[str, Any]]]) -> None:
    by_table: dict[Any, list[dict[str, Any]]] = {}
    for table_, row in rows:
        by_table.setdefault(table_, []).append(row)
    for table_ in (events, audit, checkpoints):
        if table_ in by_table:
            await conn.execute(insert(table_), by_table[table_])


async def held(engine: AsyncEngine, tid: str) -> dict[str, int]:
    """Rows the database holds for thread `tid`, read back."""
    out = {}
    async with engine.connect() as conn:
        for name, table_ in (("events", events), ("audit", audit), ("checkpoints", checkpoints)):
            out[name] = int(
                await conn.scalar(select(func.count()).select_from(table_).where(table_.c.thread_id == tid))
                or 0
            )
    return out


# -- one backend -----------------------------------------------------------------------------------


async def measure(url: str, writes: Sequence[Write], repeats: int) -> dict[str, Any]:
    """Each way `repeats` times, interleaved, into a fresh thread each time; then what the database holds."""
    store = await Store.open(url)
    engine: AsyncEngine = store._engine  # the Store's own engine: same pool, drivers and pragmas
    seconds: dict[str, list[float]] = {w: [] for w in WAYS}
    rows: dict[str, dict[str, int]] = {}
    try:
        warm = await store.create_thread("bench", "warm-up", "scripted", "warm-up")
        await through_store(store, warm, writes[:20])
        for _ in range(repeats):
            for way in WAYS:
                tid = await store.create_thread("bench", f"store-{way}", "scripted", TASK)
                gc.collect()
                with Stopwatch() as t:
                    if way == "store":
                        await through_store(store, tid, writes)
                    else:
                        await (plain if way == "plain" else batched)(engine, tid, writes)
                seconds[way].append(t.s)
                rows[way] = await held(engine, tid)
    finally:
        await store.close()
    counts = {k: sum(w.kind == k for w in writes) for k in ("event", "audit", "checkpoint")}
    out: dict[str, Any] = {"url": redact(url), "ways": {}}
    for way in WAYS:
        median = statistics.median(seconds[way])
        out["ways"][way] = {
            "label": LABELS[way],
            "seconds": seconds[way],
            "median_s": median,
            "events_per_s": counts["event"] / median,
            "rows_held": rows[way],
        }
    out["ratio"] = out["ways"]["store"]["events_per_s"] / out["ways"]["plain"]["events_per_s"]
    out["batched_ratio"] = out["ways"]["store"]["events_per_s"] / out["ways"]["batched"]["events_per_s"]
    return out


# -- PostgreSQL's scratch database -----------------------------------------------------------------


def _admin_urls() -> list[str]:
    env = os.environ.get("PARLEY_TEST_PG_URL")
    return [env] if env else [PG_DEFAULT, PG_DEFAULT.replace("//postgres@", "//root@")]


async def _admin(url: str, sql: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def postgresql(writes: Sequence[Write], repeats: int) -> dict[str, Any]:
    """The measurement in a scratch database, dropped afterwards; or `{"skipped": reason}`."""
    name = f"parley_bench_{uuid.uuid4().hex[:12]}"
    why = []
    for admin in _admin_urls():
        try:
            await _admin(admin, f'CREATE DATABASE "{name}"')
        except Exception as exc:
            why.append(f"{redact(admin)}: {type(exc).__name__}: {exc}")
            continue
        try:
            return await measure(
                normalise_url(admin).set(database=name).render_as_string(hide_password=False), writes, repeats
            )
        finally:
            await _admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {"skipped": "PostgreSQL not reachable (" + "; ".join(why) + "); set PARLEY_TEST_PG_URL"}


def stored_bytes(writes: Sequence[Write]) -> dict[str, int]:
    """The JSON bytes a run's writes store, by kind."""
    out = {"event": 0, "audit": 0, "checkpoint": 0}
    for w in writes:
        out[w.kind] += sum(len(json.dumps(a)) for a in w.args if isinstance(a, (dict, list)))
    return out


async def growth(lengths: Sequence[int]) -> dict[str, Any]:
    """Stored bytes per message for runs of each length, and the last's ratio to the first's."""
    per: dict[str, Any] = {}
    for n in lengths:
        by_kind = stored_bytes(await record(n))
        per[str(n)] = {
            "bytes": by_kind,
            "bytes_per_message": sum(by_kind.values()) / n,
            "checkpoint_bytes_per_message": by_kind["checkpoint"] / n,
        }
    first, last = per[str(lengths[0])], per[str(lengths[-1])]
    ratio = last["bytes_per_message"] / first["bytes_per_message"]
    return {
        "lengths": list(lengths),
        "runs": per,
        "ratio": ratio,
        "target": GROWTH_TARGET,
        "target_met": ratio <= GROWTH_TARGET,
    }


async def measure_all(messages: int, repeats: int) -> dict[str, Any]:
    writes = await record(messages)
    counts = {k: sum(w.kind == k for w in writes) for k in ("event", "audit", "checkpoint")}
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        sqlite = await measure(f"sqlite+aiosqlite:///{Path(tmp) / 'store.db'}", writes, repeats)
    return {
        "messages": messages,
        "agents": len(ROLES),
        "repeats": repeats,
        "writes": counts,
        "checkpoint_mb": sum(len(json.dumps(w.args[1])) for w in writes if w.kind == "checkpoint") / 1e6,
        "sqlite": sqlite,
        "postgresql": await postgresql(writes, repeats),
        "growth": await growth((10, 20) if messages < 50 else GROWTH),
    }


def run(smoke: bool) -> dict[str, Any]:
    """Measure, print the table, save the JSON; returns what was saved."""
    messages, repeats = (8, 1) if smoke else (100, 5)
    data = asyncio.run(measure_all(messages, repeats))
    rows: list[list[Any]] = []
    notes = []
    for backend in ("sqlite", "postgresql"):
        result = data[backend]
        if "skipped" in result:
            rows.append([backend, "skipped: PostgreSQL not reachable (reason below)", "", "", ""])
            notes.append(f"{backend}: skipped: {result['skipped']}")
            continue
        plain_eps = result["ways"]["plain"]["events_per_s"]
        for way in WAYS:
            w = result["ways"][way]
            rows.append(
                [backend, w["label"], w["median_s"], w["events_per_s"], w["events_per_s"] / plain_eps]
            )
    w = data["writes"]
    table(
        ["backend", "way", "median s", "events/s", "÷ plain"],
        rows,
        title=f"Store throughput: a {messages}-message run's writes ({w['event']} events, {w['audit']} audit "
        f"row(s), {w['checkpoint']} checkpoints, {data['checkpoint_mb']:.1f} MB of them); "
        f"median of {repeats} interleaved runs",
    )
    ratios = [f"{b} {data[b]['ratio']:.2f}" for b in ("sqlite", "postgresql") if "ratio" in data[b]]
    print("ratio store/plain (events/s): " + ", ".join(ratios), *notes, sep="\n")
    g = data["growth"]
    sizes = ", ".join(
        f"{n} messages: {r['bytes_per_message']:.0f} B/message (checkpoints "
        f"{r['checkpoint_bytes_per_message']:.0f})"
        for n, r in g["runs"].items()
    )
    verdict = "met" if g["target_met"] else "missed"
    print(
        f"stored bytes per message: {sizes}; ratio {g['ratio']:.2f} (target ≤ {g['target']:.2f}: {verdict})"
    )
    save("store", data, smoke=smoke)
    return data


def main(argv: Sequence[str] | None = None) -> int:
    args = parser((__doc__ or "store").splitlines()[0]).parse_args(argv)
    run(args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
