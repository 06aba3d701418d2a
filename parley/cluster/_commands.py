"""What crosses the cluster besides events: a person's command to a run's owner, and a job for a worker.

Both are read back from Redis, where anyone who can reach it may have written: every field is bounded
and unknown fields are refused.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..paths import is_server_id

__all__ = ["Command", "Job", "new_id"]

MAX_TEXT = 100_000
"""The longest message or answer a command or job may carry, in characters."""

_Id = Annotated[str, Field(min_length=1, max_length=64)]
_Actor = Annotated[str, Field(min_length=1, max_length=200)]
_Text = Annotated[str, Field(max_length=MAX_TEXT)]


def _server_id(value: str) -> str:
    if not is_server_id(value):
        raise ValueError(
            "not a conversation id of this server (a UUID, lower-case hex, with or without dashes)"
        )
    return value


def new_id() -> str:
    """A fresh id for a command or a job (uuid4 hex)."""
    return uuid.uuid4().hex


class Command(BaseModel):
    """A person's command to the process that owns a run, sent from any node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["say", "interrupt", "stop", "approve", "deny", "answer", "resolve", "leave_escalated"]
    """What to do: say (interject), interrupt, stop, approve or deny a tool call, answer a question, resolve an
    escalation."""
    actor: _Actor
    """Who sent it: the user name recorded in the audit and shown beside the message."""
    text: _Text = ""
    """The message (say, interrupt), the answer (answer), or the reason (deny, resolve)."""
    target: Annotated[str, Field(max_length=64)] = ""
    """The approval request, question or escalation the command settles; empty for say, interrupt, stop."""
    choose: int | None = None
    """The option picked when resolving an escalation."""
    proceed: bool = False
    """Resolving an escalation: carry on past the problem rather than stop."""
    run: int | None = None
    """The run the command is for (its place among the conversation's runs), as the sender saw it: a stop or a
    decision meant for a run that has ended is not applied to the next one. A message (`say`) names none: it
    joins whatever run it reaches, or starts one."""
    id: _Id = Field(default_factory=new_id)
    """Made by the sender, so a command seen twice can be told apart from two alike."""


class Job(BaseModel):
    """A run for some worker to take: start a thread's run on a task, or resume it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thread_id: Annotated[str, AfterValidator(_server_id)]
    """The thread whose run to own."""
    text: _Text
    """The task (start) or the message that resumes the run (resume)."""
    actor: _Actor
    """Who asked for the run."""
    mode: Literal["start", "resume", "eval", "commands"]
    """Start a new run on the thread, or resume it from its last checkpoint."""
    id: _Id = Field(default_factory=new_id)
    """Made by the sender; `Bus.done` finds the job by it."""
