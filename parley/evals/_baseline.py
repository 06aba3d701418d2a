"""`--baseline OLD/results.jsonl`: each scenario's pass rate now against an earlier evaluation's, marked as a
regression, an improvement, unchanged, new (not in the baseline) or gone (in the baseline, not run now).

The baseline file is input from anywhere (a CI artifact): it is read line by line with a size limit, and a
line that is not a scenario run's record is an error naming the file and line, before anything runs."""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from ..errors import ConfigError

__all__ = ["Baseline", "baseline_html", "baseline_markdown", "group_key", "load_baseline", "mark"]

MAX_BYTES = 200_000_000
Key = tuple[str, str, str]
Baseline = dict[Key, tuple[int, int]]
"""(suite, scenario, variant) -> (passed, runs) of the counted (not interrupted) runs."""
MARKS = ("regression", "improvement", "unchanged", "new")


def group_key(record: dict[str, Any]) -> str:
    """What a report compares: the --compare variant, else the team (with its pattern), as the report says."""
    return record.get("variant") or f"{record.get('team')} ({record.get('pattern') or '?'})"


def load_baseline(path: Path) -> Baseline:
    """The pass counts of an earlier evaluation's results.jsonl. Raises ConfigError on anything else."""
    if not path.is_file():
        raise ConfigError(f"--baseline {path}: no such file (give an earlier evaluation's results.jsonl)")
    if path.stat().st_size > MAX_BYTES:
        raise ConfigError(f"--baseline {path}: larger than {MAX_BYTES:,} bytes; not an evaluation's results")
    counts: dict[Key, list[int]] = defaultdict(lambda: [0, 0])
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = _record(path, number, line)
            if record["status"] == "interrupted":
                continue
            count = counts[(record["suite"], record["scenario"], record.get("variant") or "")]
            count[0] += bool(record["passed"])
            count[1] += 1
    if not counts:
        raise ConfigError(f"--baseline {path}: no scenario runs in it")
    return {k: (p, n) for k, (p, n) in counts.items()}


def _record(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        record: object = json.loads(line)
    except (ValueError, RecursionError):
        record = None
    if isinstance(record, dict):
        found = cast(dict[str, Any], record)
        if (
            all(isinstance(found.get(k), str) for k in ("suite", "scenario", "status"))
            and isinstance(found.get("passed"), bool)
            and isinstance(found.get("variant", ""), str | None)
        ):
            return found
    raise ConfigError(
        f"--baseline {path}:{number}: not a scenario run's record (an evaluation's results.jsonl has "
        "suite, scenario, status and passed on every line)"
    )


def mark(records: Sequence[dict[str, Any]], baseline: Baseline) -> list[dict[str, Any]]:
    """Give each record its scenario's `baseline` mark (was, now, mark); return the baseline's scenarios that
    did not run now ("gone")."""
    now: dict[Key, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if r["status"] != "interrupted":
            count = now[(r["suite"], r["scenario"], r.get("variant") or "")]
            count[0] += bool(r["passed"])
            count[1] += 1
    for r in records:
        key = (r["suite"], r["scenario"], r.get("variant") or "")
        if key not in now:
            r["baseline"] = None
            continue
        p, n = now[key]
        was = baseline.get(key)
        r["baseline"] = {"mark": _mark(was, (p, n)), "was": list(was) if was else None, "now": [p, n]}
    return [
        {"suite": k[0], "scenario": k[1], "variant": k[2], "was": list(v)}
        for k, v in baseline.items()
        if k not in now
    ]


def _mark(was: tuple[int, int] | None, now: tuple[int, int]) -> str:
    if was is None:
        return "new"
    old_rate, new_rate = was[0] / was[1], now[0] / now[1]
    if new_rate < old_rate:
        return "regression"
    return "improvement" if new_rate > old_rate else "unchanged"


def _marked(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per scenario and compared side that has a baseline mark."""
    seen: dict[Key, dict[str, Any]] = {}
    for r in records:
        if r.get("baseline"):
            seen.setdefault((r["suite"], r["scenario"], r.get("variant") or ""), r)
    return list(seen.values())


def _rate(count: Sequence[int] | None) -> str:
    return "-" if not count else f"{count[0]}/{count[1]} ({count[0] / count[1]:.0%})"


def _counts(marked: Sequence[dict[str, Any]]) -> str:
    found = [r["baseline"]["mark"] for r in marked]
    return " · ".join(f"{m}: {found.count(m)}" for m in MARKS)


def baseline_markdown(records: Sequence[dict[str, Any]]) -> list[str]:
    marked = _marked(records)
    if not marked:
        return []
    lines = ["", "## Against the baseline", "", _counts(marked), ""]
    lines += ["| scenario | compared | baseline | now | mark |", "|---|---|---|---|---|"]
    for r in sorted(marked, key=lambda r: MARKS.index(r["baseline"]["mark"])):
        b = r["baseline"]
        word = b["mark"].upper() if b["mark"] == "regression" else b["mark"]
        lines.append(
            f"| {r['suite']} / {r['scenario']} | {group_key(r)} | {_rate(b['was'])} | {_rate(b['now'])} | "
            f"{word} |"
        )
    return lines


_CLASS = {"regression": "fail", "improvement": "pass", "unchanged": "meta", "new": "meta"}


def baseline_html(records: Sequence[dict[str, Any]]) -> list[str]:
    marked = _marked(records)
    if not marked:
        return []
    e = html.escape
    parts = [
        f"<h2>Against the baseline</h2><p>{e(_counts(marked))}</p>",
        "<table><tr><th>scenario</th><th>compared</th><th>baseline</th><th>now</th><th>mark</th></tr>",
    ]
    for r in sorted(marked, key=lambda r: MARKS.index(r["baseline"]["mark"])):
        b = r["baseline"]
        parts.append(
            f"<tr><td>{e(r['suite'])} / {e(r['scenario'])}</td><td>{e(group_key(r))}</td>"
            f"<td>{_rate(b['was'])}</td><td>{_rate(b['now'])}</td>"
            f"<td class={_CLASS[b['mark']]}>{'▼ ' if b['mark'] == 'regression' else ''}"
            f"{'▲ ' if b['mark'] == 'improvement' else ''}{e(b['mark'])}</td></tr>"
        )
    parts.append("</table>")
    return parts
