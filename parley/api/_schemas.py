"""What the API's requests carry and its answers hold (the OpenAPI document is made from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AnswerIn",
    "ApprovalIn",
    "ConversationIn",
    "ConversationOut",
    "ConversationRead",
    "Decided",
    "EscalationIn",
    "MessageIn",
    "Problem",
    "RoleOut",
    "Sent",
    "Stopped",
    "StoredEvent",
    "TeamOut",
]

MAX_TEXT = 1_000_000
"""The longest message a request may carry (characters), as the web chat allows."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    detail: str
    """What went wrong, and what to do."""


class RoleOut(BaseModel):
    name: str
    description: str


class TeamOut(BaseModel):
    name: str
    description: str = ""
    pattern: str = ""
    model: str | None = None
    """The team file's model (None: the server's default)."""
    roles: list[RoleOut] = Field(default_factory=list[RoleOut])
    error: str | None = None
    """Why the team file is broken; such a team cannot run."""


class ConversationIn(_In):
    team: str = Field(min_length=1, max_length=200)
    """A team's name (GET /teams)."""
    model: str | None = Field(default=None, max_length=500)
    """A model string (`local`, `ollama:llama3.2`, `openai:gpt-4o-mini`, `scripted:FILE` from the server's scripts
    folder); default: the team's."""
    message: str | None = Field(default=None, max_length=MAX_TEXT)
    """The task: when given, the team starts on it at once."""
    title: str | None = Field(default=None, max_length=200)
    """The name the conversation is listed under; default: the first words of `message`."""


class ConversationOut(BaseModel):
    id: str
    team: str
    model: str
    title: str
    created_at: datetime
    updated_at: datetime
    running: bool
    """A run is in progress on this server."""


class StoredEvent(BaseModel):
    seq: int
    """The event's number in its conversation (1, 2, 3…): the Server-Sent Events' id."""
    type: str
    event: dict[str, Any]
    """The event as parley records it (`type`, `source`, `content`, `turn`, …)."""


class ConversationRead(ConversationOut):
    pending: dict[str, list[dict[str, Any]]]
    """What the run in progress waits on a human for: `approvals`, `questions`, `escalations`."""
    events: list[StoredEvent]


class MessageIn(_In):
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    mode: Literal["say", "interrupt"] = "say"
    """`say`: joins after the current agent's turn (or starts a run when none is going); `interrupt`: cuts the
    current turn short and continues with this message."""


class Sent(BaseModel):
    run: int
    """The run the message went to (1 for the conversation's first)."""
    running: bool


class Stopped(BaseModel):
    stopped: bool
    """False when no run was going."""


class ApprovalIn(_In):
    approve: bool
    reason: str = Field(default="", max_length=MAX_TEXT)
    """Said to the agent when the call is denied."""


class AnswerIn(_In):
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class EscalationIn(_In):
    """Exactly one of `choose`, `text` and `proceed`."""

    choose: int | None = Field(default=None, ge=1, le=1000)
    """A position, 1-based."""
    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    """Your own answer."""
    proceed: bool = False
    """Let the team go on as it was."""


class Decided(BaseModel):
    ok: bool = True
