"""The failure-mode findings in summary.md and report.html: counts per compared team (and pattern) or model, by
MAST group and by mode, then each finding with its turn, role and evidence."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ._findings import GROUPS

__all__ = ["findings_html", "findings_markdown", "tally"]

TITLE = "Failure-mode findings"


Key = Callable[[dict[str, Any]], str]
"""What a report compares a record as (its --compare side, or its team and pattern)."""


def _found(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A record's findings (none in a record written before findings were)."""
    found: list[dict[str, Any]] = record.get("findings") or []
    return found


def _counted(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["status"] != "interrupted"]


def tally(records: Sequence[dict[str, Any]], key: Key) -> list[dict[str, Any]]:
    """Per compared side: runs, runs with a finding, findings in all, per MAST group and per mode."""
    rows: dict[str, dict[str, Any]] = {}
    for r in _counted(records):
        row = rows.setdefault(
            key(r), {"group": key(r), "runs": 0, "runs_with_findings": 0, "findings": 0, "modes": Counter()}
        )
        found = _found(r)
        row["runs"] += 1
        row["runs_with_findings"] += bool(found)
        row["findings"] += len(found)
        for g in GROUPS:
            row[g] = row.get(g, 0) + sum(f["group"] == g for f in found)
        row["modes"].update(f["mode"] for f in found)
    return list(rows.values())


def _rows(records: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(r, f) for r in _counted(records) for f in _found(r)]


def _notes(records: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    return [(r, r["findings_note"]) for r in _counted(records) if r.get("findings_note")]


def _modes(row: dict[str, Any]) -> str:
    return ", ".join(f"{mode} {n}" for mode, n in sorted(row["modes"].items())) or "-"


def findings_markdown(records: Sequence[dict[str, Any]], key: Key) -> list[str]:
    lines = [
        "",
        f"## {TITLE}",
        "",
        "| compared | runs with findings | findings | " + " | ".join(GROUPS) + " | modes |",
        "|---|---|---|" + "---|" * len(GROUPS) + "---|",
    ]
    for row in tally(records, key):
        lines.append(
            f"| {row['group']} | {row['runs_with_findings']}/{row['runs']} | {row['findings']} | "
            + " | ".join(str(row[g]) for g in GROUPS)
            + f" | {_modes(row)} |"
        )
    found = _rows(records)
    if not found:
        lines += ["", "No failure mode found in any run."]
    else:
        lines.append("")
    for r, f in found:
        judged = " (judge)" if f["by"] == "judge" else ""
        lines.append(
            f"- **{r['scenario']}** ({key(r)}, run {r['repeat']}), turn {f['turn']}, {f['role'] or '?'}: "
            f"*{f['mode']}* ({f['group']}){judged} — {f['evidence']}"
        )
    lines += [
        f"- note on **{r['scenario']}** ({key(r)}, run {r['repeat']}): {note}" for r, note in _notes(records)
    ]
    return lines


def findings_html(records: Sequence[dict[str, Any]], key: Key) -> list[str]:
    e = html.escape
    parts = [
        f"<h2>{TITLE}</h2><table><tr><th>compared</th><th>runs with findings</th><th>findings</th>"
        + "".join(f"<th>{e(g)}</th>" for g in GROUPS)
        + "<th>modes</th></tr>"
    ]
    for row in tally(records, key):
        parts.append(
            f"<tr><td>{e(row['group'])}</td><td>{row['runs_with_findings']}/{row['runs']}</td>"
            f"<td class={'fail' if row['findings'] else 'pass'}>{row['findings']}</td>"
            + "".join(f"<td>{row[g]}</td>" for g in GROUPS)
            + f"<td>{e(_modes(row))}</td></tr>"
        )
    parts.append("</table>")
    found = _rows(records)
    if not found:
        parts.append("<p class=meta>No failure mode found in any run.</p>")
    else:
        parts.append(
            "<table class=findings><tr><th>scenario</th><th>compared</th><th>run</th><th>turn</th><th>role</th>"
            "<th>mode</th><th>evidence</th></tr>"
        )
        for r, f in found:
            by = " <span class=meta>(judge)</span>" if f["by"] == "judge" else ""
            parts.append(
                f"<tr><td>{e(r['scenario'])}</td><td>{e(key(r))}</td><td>{r['repeat']}</td><td>{f['turn']}</td>"
                f"<td>{e(f['role'] or '?')}</td><td><span class=fail>{e(f['mode'])}</span><br>"
                f"<span class=meta>{e(f['group'])}</span>{by}</td><td>{e(f['evidence'])}</td></tr>"
            )
        parts.append("</table>")
    notes = _notes(records)
    if notes:
        parts.append("<p class=meta>Notes on the judge model's answers:</p><ul>")
        parts += [
            f"<li class=skip>{e(r['scenario'])} ({e(key(r))}, run {r['repeat']}): {e(note)}</li>"
            for r, note in notes
        ]
        parts.append("</ul>")
    return parts
