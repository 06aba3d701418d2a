"""`parley worker`: a process of the cluster that runs conversations for the web processes, which then only relay.

A worker takes jobs (a human message to a conversation no process drives) from the cluster's queue, owns the run
each starts (its lease), and carries on the runs whose owner died. Engine work scales by adding workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping

from ..conversation import Conversation
from ..errors import ConfigError
from ._commands import Job
from ._node import Node

__all__ = ["serve"]

log = logging.getLogger("parley.cluster")
TAKE_WAIT_S = 5.0
"""How long one wait on the queue lasts before the worker looks at its own state again."""


Handler = Callable[[Node, Job], Awaitable[None]]
"""What a worker does with a job of another kind than a conversation's (`parley eval --workers`: a scenario run)."""


async def _handle(node: Node, job: Job, handlers: Mapping[str, Handler]) -> None:
    handler = handlers.get(job.mode)
    if handler is not None:
        await handler(node, job)
        return
    try:
        conversation = await Conversation.resume(node.store, job.thread_id)
    except ConfigError as exc:
        log.warning("job %s for %s refused: %s", job.id, job.thread_id, exc)
        return
    if job.mode == "commands":  # messages wait with nobody to read them: own the conversation and apply them
        await node.pick_up(job.thread_id, conversation)
        return
    if job.mode == "resume":
        await node.carry_on(job.thread_id)
        await conversation.close()
        return
    owned, run = await node.say(conversation, job.text, job.actor, here=True)
    if owned is not conversation:
        await conversation.close()
    log.info("job %s: %s in %s", job.id, "started" if run is not None else "sent", job.thread_id)


async def serve(
    node: Node,
    *,
    concurrency: int = 64,
    stop: asyncio.Event | None = None,
    handlers: Mapping[str, Handler] | None = None,
) -> None:
    """Take jobs until `stop` is set (or SIGTERM/SIGINT): each starts a run this worker owns, up to
    `concurrency` jobs being started at once."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    node.runs_here = True  # whatever PARLEY_RUNS the web processes share with it: a worker runs conversations
    await node.bus.beat(node.name, node.ttl_s * 3)  # alive before it takes anything (see Bus.dead_takers)
    node.start_sweeping()
    slots = asyncio.Semaphore(concurrency)
    jobs: set[asyncio.Task[None]] = set()
    log.warning("parley worker %s: taking jobs", node.name)
    while not stop.is_set():
        await slots.acquire()
        job = await node.bus.take(node.name, TAKE_WAIT_S)
        if job is None:
            slots.release()
            continue
        task = loop.create_task(_run_job(node, job, slots, handlers or {}), name=f"parley-job-{job.id}")
        jobs.add(task)
        task.add_done_callback(jobs.discard)
    if jobs:  # jobs being started: their runs are owned (or their records sent) before the worker goes
        await asyncio.gather(*jobs, return_exceptions=True)
    await node.close(hand_on=True)  # a worker stopped (a deploy, a scale-down): its runs go on elsewhere


async def _run_job(node: Node, job: Job, slots: asyncio.Semaphore, handlers: Mapping[str, Handler]) -> None:
    try:
        await _handle(node, job, handlers)
    except Exception:
        log.exception("job %s for %s failed", job.id, job.thread_id)
    finally:
        await node.bus.done(node.name, job)
        slots.release()
