"""Shared memory: notes every role of the conversation can read and add to."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from parley.tools import current_context, tool

MAX_NOTE = 2000


@tool(family="memory")
def team_notes(
    action: Annotated[Literal["read", "add"], "'read' to see every note, 'add' to add one"],
    text: Annotated[str, "The note to add (for 'add')"] = "",
) -> str:
    """Read or add to the team's shared notes: facts, decisions and open questions every role can see."""
    ctx = current_context()
    if action == "add":
        text = text.strip()
        if not text:
            return "Nothing to add: give the note's text."
        ctx.notes.append({"role": ctx.role, "text": text[:MAX_NOTE], "ts": time.time()})
        return f"Note {len(ctx.notes)} added."
    if not ctx.notes:
        return "No notes yet."
    return "\n".join(f"{i}. [{n['role']}] {n['text']}" for i, n in enumerate(ctx.notes, 1))
