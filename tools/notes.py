"""Shared memory: notes every role of the conversation can read and add to."""

from __future__ import annotations

from typing import Annotated, Literal

from parley.tools import current_context, tool


@tool(family="memory")
def team_notes(
    action: Annotated[Literal["read", "add"], "'read' to see every note, 'add' to add one"],
    text: Annotated[str, "The note to add (for 'add')"] = "",
) -> str:
    """Read or add to the team's shared notes: facts, decisions and open questions every role can see."""
    ctx = current_context()
    if action == "add":
        if not text.strip():
            return "Nothing to add: give the note's text."
        ctx.add_note(text)
        return f"Note {len(ctx.notes)} added."
    if not ctx.notes:
        return "No notes yet."
    return "\n".join(f"{i}. [{n['role']}] {n['text']}" for i, n in enumerate(ctx.notes, 1))
