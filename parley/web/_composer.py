"""What a person types while a run goes on: an interrupt, an answer, a reason for a denial, a message that joins."""

from __future__ import annotations

from typing import TYPE_CHECKING

import chainlit as cl

from ._format import SYSTEM

if TYPE_CHECKING:
    from ..cluster import RemoteRun
    from ..run import Run

__all__ = ["join", "say_system", "settle"]


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
