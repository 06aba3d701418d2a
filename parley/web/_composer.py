"""What people type while a run goes on (an interrupt, an answer, a reason for a denial, a message that joins), and
how each page shows what the others in a shared room typed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import chainlit as cl

from ..events import HumanMessageEvent, HumanQueuedEvent
from ..run import Run
from ._format import SYSTEM, human_note

if TYPE_CHECKING:
    from ..cluster import RemoteRun

__all__ = ["join", "say_system", "settle", "show_human", "show_queued", "stop_as"]


async def say_system(text: str) -> None:
    """A note from parley on the page."""
    await cl.Message(content=text, author=SYSTEM).send()


async def join(run: Run | RemoteRun, text: str, command: str | None, user: str) -> None:
    """A message typed while the run goes on: an interrupt, the answer to a role's question, or a message that
    joins after the current turn."""
    if command == "Interrupt":
        run.interrupt(text, author=user)
        return
    questions = run.pending_questions
    if questions and not command:  # a role asked the human: what they type next is the answer
        run.answer(questions[0].question_id, text, actor=user)
        return
    run.say(text, author=user)
    if run.pending_escalations:
        await say_system("*The team waits for your decision above; your message joins once it is made.*")


def stop_as(run: Run | RemoteRun, user: str) -> None:
    """`user` stops `run`, here or in the process that owns it: the run's result names them, so the other pages
    of a shared room say who stopped it."""
    run.stop(actor=user)


async def settle(run: Run | RemoteRun, awaiting: tuple[str, str], text: str, user: str) -> bool:
    """The reason for a denial, or a person's own answer to an escalation, typed after its button. False if
    nothing was settled yet (an empty answer)."""
    kind, key = awaiting
    if kind == "write" and not text:
        await say_system("Type your answer first: the team goes on with it.")
        return False
    try:
        if kind == "deny":
            run.deny(key, text, actor=user)
        else:
            run.resolve(key, text=text, actor=user)
    except KeyError:
        await say_system("That decision has already been made.")
    return True


async def show_human(ev: HumanMessageEvent, viewer: str) -> None:
    """A human message reached the team: said to `viewer` as theirs, or as the other person's."""
    shown = human_note(ev, viewer)
    if shown is not None:
        await cl.Message(content=shown[1], author=shown[0]).send()


async def show_queued(ev: HumanQueuedEvent, viewer: str) -> None:
    """A message another person in the room typed (`viewer`'s own is on their page already)."""
    if ev.author and ev.author != viewer:
        await cl.Message(content=f"**{ev.author}:** {ev.content}", author=SYSTEM).send()
