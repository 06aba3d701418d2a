"""How events read in the web chat: one place, used live and when a stored conversation is reopened."""

from __future__ import annotations

import json

from .._render import summary
from ..events import (
    ApprovalDecisionEvent,
    ApprovalRequestEvent,
    ErrorEvent,
    Event,
    FileEvent,
    HumanMessageEvent,
    MessageEvent,
    NoticeEvent,
    RunResult,
    TurnAbandonedEvent,
)

SYSTEM = "parley"


def speaker_header(source: str, turn: int) -> str:
    # Chainlit 2.12 shows an author's name only on hovering the avatar: say it in the message too.
    return f"**{source}** · turn {turn}\n\n"


def agent_text(ev: MessageEvent) -> str:
    body = ev.content if ev.kind != "tool_summary" else f"Tool result:\n\n```\n{ev.content}\n```"
    return speaker_header(ev.source, ev.turn) + body


def approval_text(ev: ApprovalRequestEvent) -> str:
    args = json.dumps(ev.arguments, indent=2, ensure_ascii=False)
    return f"**{ev.source}** wants to call `{ev.name}` and needs your approval:\n\n```json\n{args}\n```"


def decision_text(ev: ApprovalDecisionEvent) -> str:
    verdict = "approved" if ev.approved else "denied"
    because = f": {ev.reason}" if ev.reason else ""
    return f"`{ev.name}` {verdict} by {ev.actor}{because}"


def note(ev: Event) -> tuple[str, str] | None:
    """(author, markdown) for an event shown as a message, or None when it is not one."""
    if isinstance(ev, MessageEvent):
        return ev.source, agent_text(ev)
    if isinstance(ev, TurnAbandonedEvent):
        return ev.source, speaker_header(ev.source, ev.turn) + ev.content + f"\n\n*(cut short: {ev.reason})*"
    if isinstance(ev, ApprovalRequestEvent):
        return SYSTEM, approval_text(ev)
    if isinstance(ev, ApprovalDecisionEvent):
        return SYSTEM, decision_text(ev)
    if isinstance(ev, ErrorEvent):
        return SYSTEM, f"**Error** in {ev.source}: `{ev.error_type}`: {ev.content}"
    if isinstance(ev, NoticeEvent):
        return SYSTEM, f"*{ev.content}*"
    if isinstance(ev, HumanMessageEvent) and ev.mode != "task":
        how = "interrupted the turn" if ev.mode == "interrupt" else f"joined the conversation after turn {ev.turn}"
        return SYSTEM, f"↳ your message {how}: *{ev.content}*"
    if isinstance(ev, FileEvent):
        return ev.source, f"**{ev.source}** wrote `{ev.name}` ({ev.size:,} bytes) with `{ev.tool}`"
    if isinstance(ev, RunResult):
        return SYSTEM, f"**Run ended** · {summary(ev)}"
    return None
