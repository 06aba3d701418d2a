"""`parley audit RUN_ID`: a stored conversation's decisions, as JSON lines or a Markdown table."""

from __future__ import annotations

import json
import sys
from typing import Any

from ._render import visible
from .errors import ConfigError
from .store import AuditRow, open_for_command

FORMATS = ("md", "jsonl")
SUMMARY_KEYS = (
    "tool",
    "kind",
    "attempt",
    "choice",
    "round",
    "tally",
    "problems",
    "text",
    "reason",
    "message",
)
"""The details the Markdown table shows, in this order (`message`: the agent message a thumbs up or down rated,
its speaker and turn first)."""


def record(row: AuditRow) -> dict[str, Any]:
    """One audit row as the export shows it: run, turn, who, what, decision, when, and the details."""
    detail = dict(row.detail)
    return {
        "id": row.id,
        "thread": row.thread_id,
        "run": detail.pop("run", None),
        "turn": detail.pop("turn", None),
        "when": row.created_at.isoformat(),
        "who": row.actor,
        "what": row.action,
        "decision": detail.pop("decision", ""),
        "detail": detail,
    }


def markdown(thread: str, team: str, records: list[dict[str, Any]]) -> str:
    lines = [
        f"# Audit trail of {thread} ({visible(team, one_line=True)})",
        "",
        "| # | run | turn | when (UTC) | who | what | decision | detail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(records, 1):
        when = r["when"][:19].replace("T", " ")
        lines.append(
            f"| {i} | {r['run'] or ''} | {r['turn'] if r['turn'] is not None else ''} | {when} | {_cell(r['who'])} "
            f"| {r['what']} | {_cell(str(r['decision']))} | {_cell(_summary(r['detail']))} |"
        )
    if not records:
        lines.append("| | | | | | | | nothing recorded yet |")
    return "\n".join(lines) + "\n"


def _summary(detail: dict[str, Any]) -> str:
    parts: list[str] = []
    for key in SUMMARY_KEYS:
        value = detail.get(key)
        if value not in (None, "", [], {}):
            parts.append(f"{key}: {value if not isinstance(value, (dict, list)) else json.dumps(value)}")
    return "; ".join(parts)


def _cell(text: str, limit: int = 160) -> str:
    # Model text (questions, answers, problems) may carry terminal escapes: shown as `\x1b`, never obeyed by a
    # terminal that prints the table.
    text = visible(" ".join(text.split()), one_line=True).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def export(thread_id: str, fmt: str) -> int:
    store = await open_for_command(hint="")
    try:
        row = await store.get_thread(thread_id)
        if row is None:
            raise ConfigError(
                f"no stored conversation {thread_id!r} in {store.url} (`parley run` prints the id "
                "at the end of each run; runs with --no-save are not kept)"
            )
        records = [record(r) for r in await store.audit_log(thread_id)]
    finally:
        await store.close()
    if fmt == "jsonl":
        for r in records:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(markdown(thread_id, row.team, records))
    return 0
