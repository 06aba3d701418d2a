"""Repeat statistics of an evaluation, for models that do not answer the same way twice.

Per scenario (and compared side), over its k counted runs (`repeat:` or `--repeat K`): the pass rate with a 95%
Wilson score interval, pass^k (every one of the k runs passed), pass@k (at least one did) and flakiness (0 when
every run agrees, 1 when half pass). Per compared side: the pass rate of all its runs with its interval, and how
many scenarios pass^k, pass@k and are flaky. Interrupted runs are not counted.

`annotate` puts each scenario's figures (and its baseline mark, its simulated human's usage) into its records, so
results.jsonl carries them; `markdown_sections` and `html_sections` render them for summary.md and report.html.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ._baseline import baseline_html, baseline_markdown, group_key

__all__ = ["annotate", "group_stats", "html_sections", "markdown_sections", "scenario_stats", "wilson"]

Z95 = 1.959963984540054
"""The normal quantile of a two-sided 95% interval."""


def wilson(passed: int, runs: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a pass rate: sound for few runs and for rates of 0 or 1, where the normal
    approximation's interval collapses to a point."""
    if runs <= 0:
        return 0.0, 1.0
    p = passed / runs
    denominator = 1 + z * z / runs
    centre = (p + z * z / (2 * runs)) / denominator
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def scenario_key(record: dict[str, Any]) -> tuple[str, str, str]:
    return record["suite"], record["scenario"], record.get("variant") or ""


def _counted(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["status"] != "interrupted"]


def scenario_stats(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario and compared side, in the suites' order: runs, passed, pass rate and its interval, pass^k,
    pass@k, flaky and flakiness."""
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    groups: dict[tuple[str, str, str], str] = {}
    for r in _counted(records):
        runs[scenario_key(r)].append(r)
        groups[scenario_key(r)] = group_key(r)
    out: list[dict[str, Any]] = []
    for key, rs in runs.items():
        n, c = len(rs), sum(bool(r["passed"]) for r in rs)
        low, high = wilson(c, n)
        out.append(
            {
                "suite": key[0],
                "scenario": key[1],
                "variant": key[2],
                "group": groups[key],
                "k": n,
                "passed": c,
                "pass_rate": c / n,
                "ci95": [round(low, 4), round(high, 4)],
                "pass_hat_k": c == n,
                "pass_at_k": c > 0,
                "flaky": 0 < c < n,
                "flakiness": round(1 - abs(2 * c / n - 1), 4),
            }
        )
    return out


def group_stats(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per compared side: its runs' pass rate and interval; its scenarios passing pass^k and pass@k; flaky ones."""
    by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in scenario_stats(records):
        by_group[s["group"]].append(s)
    out: list[dict[str, Any]] = []
    for group, ss in by_group.items():
        n, c = sum(s["k"] for s in ss), sum(s["passed"] for s in ss)
        low, high = wilson(c, n)
        ks = sorted({s["k"] for s in ss})
        out.append(
            {
                "group": group,
                "runs": n,
                "passed": c,
                "pass_rate": c / n,
                "ci95": [round(low, 4), round(high, 4)],
                "k": ks[0] if len(ks) == 1 else None,
                "scenarios": len(ss),
                "pass_hat_k": sum(s["pass_hat_k"] for s in ss),
                "pass_at_k": sum(s["pass_at_k"] for s in ss),
                "flaky": [s["scenario"] for s in ss if s["flaky"]],
            }
        )
    return out


def annotate(records: Sequence[dict[str, Any]]) -> None:
    """Give each counted record its scenario's repeat statistics (`repeat_stats`)."""
    stats = {(s["suite"], s["scenario"], s["variant"]): s for s in scenario_stats(records)}
    for r in records:
        found = stats.get(scenario_key(r))
        r["repeat_stats"] = (
            {k: v for k, v in found.items() if k not in ("suite", "scenario", "variant", "group")}
            if found
            else None
        )


def _repeated(records: Sequence[dict[str, Any]]) -> bool:
    return any(s["k"] > 1 for s in scenario_stats(records))


def _ci(s: dict[str, Any]) -> str:
    return f"{s['ci95'][0]:.0%}–{s['ci95'][1]:.0%}"


def _k(value: int | None) -> str:
    return "k" if value is None else str(value)


# -- summary.md -------------------------------------------------------------------------------


def markdown_sections(records: Sequence[dict[str, Any]]) -> list[str]:
    """summary.md's sections of repeat statistics, baseline marks and simulated humans (each when it has any)."""
    return [*_md_repeats(records), *baseline_markdown(records), *_md_simulated(records)]


def _md_repeats(records: Sequence[dict[str, Any]]) -> list[str]:
    if not _repeated(records):
        return []
    lines = [
        "",
        "## Repeat statistics",
        "",
        "| compared | pass rate (95% CI) | pass^k | pass@k | flaky |",
        "|---|---|---|---|---|",
    ]
    for g in group_stats(records):
        k = _k(g["k"])
        lines.append(
            f"| {g['group']} | {g['pass_rate']:.0%} ({_ci(g)}, {g['passed']}/{g['runs']} runs) | "
            f"{g['pass_hat_k']}/{g['scenarios']} scenarios pass^{k} | {g['pass_at_k']}/{g['scenarios']} "
            f"pass@{k} | {', '.join(g['flaky']) or 'none'} |"
        )
    lines += [
        "",
        "| scenario | compared | passed | pass rate (95% CI) | pass^k | pass@k | flakiness |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in scenario_stats(records):
        lines.append(
            f"| {s['suite']} / {s['scenario']} | {s['group']} | {s['passed']}/{s['k']} | {s['pass_rate']:.0%} "
            f"({_ci(s)}) | {_yes(s['pass_hat_k'])} | {_yes(s['pass_at_k'])} | "
            f"{s['flakiness']:.2f}{' (flaky)' if s['flaky'] else ''} |"
        )
    return lines


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _simulated(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("simulated_human")]


def _md_simulated(records: Sequence[dict[str, Any]]) -> list[str]:
    runs = _simulated(records)
    if not runs:
        return []
    lines = [
        "",
        "## Simulated humans",
        "",
        "Their model calls are metered apart: these tokens are not in the teams' figures above.",
        "",
        "| scenario | compared | run | model | messages | calls | tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        h = r["simulated_human"]
        said = "; ".join(f"after turn {m['turn']}: “{m['text'][:120]}”{_joined(m)}" for m in h["messages"])
        lines.append(
            f"| {r['scenario']} | {group_key(r)} | {r['repeat']} | {h['model']} | {said or 'none'} | {h['calls']} | "
            f"{h['total_tokens']:,} |"
        )
    return lines


def _joined(message: dict[str, Any]) -> str:
    """When a simulated human's message reached the team, if not right after the turn it answered."""
    joined = message.get("joined_after_turn")
    if not message.get("delivered"):
        return " (never reached the team: the run ended first)"
    return f" (joined after turn {joined})" if joined is not None and joined != message["turn"] else ""


# -- report.html ------------------------------------------------------------------------------


def html_sections(records: Sequence[dict[str, Any]]) -> list[str]:
    """report.html's sections of repeat statistics, baseline marks and simulated humans (each when it has any)."""
    return [*_html_repeats(records), *baseline_html(records), *_html_simulated(records)]


def _interval_bar(s: dict[str, Any]) -> str:
    """The 95% interval as a grey band on the 0–100% track, the pass rate as a dark tick in it."""
    low, high = s["ci95"]
    return (
        f"<span class='track iv' title='95% interval {_ci(s)}'><span class=ci style='left:{100 * low:.0f}%;"
        f"width:{max(1.0, 100 * (high - low)):.0f}%'></span><span class=pt style='left:{100 * s['pass_rate']:.0f}%'>"
        "</span></span>"
    )


def _html_repeats(records: Sequence[dict[str, Any]]) -> list[str]:
    if not _repeated(records):
        return []
    e = html.escape
    parts = [
        "<style>.iv{position:relative}.ci{position:absolute;top:0;height:100%;background:#afb8c1;border-radius:3px}"
        ".pt{position:absolute;top:-2px;width:3px;height:calc(100% + 4px);margin-left:-1px;background:#1f2328}"
        ".flaky{color:#9a6700;font-weight:600}.said{margin:0;padding-left:1rem}</style>",
        "<h2>Repeat statistics</h2><table><tr><th>compared</th><th>pass rate (95% CI)</th><th>pass^k</th>"
        "<th>pass@k</th><th>flaky scenarios</th></tr>",
    ]
    for g in group_stats(records):
        k = _k(g["k"])
        parts.append(
            f"<tr><td>{e(g['group'])}</td><td class=rate>{_interval_bar(g)} {g['pass_rate']:.0%} ({_ci(g)}; "
            f"{g['passed']}/{g['runs']} runs)</td><td>{g['pass_hat_k']}/{g['scenarios']} pass^{k}</td>"
            f"<td>{g['pass_at_k']}/{g['scenarios']} pass@{k}</td>"
            f"<td{' class=flaky' * bool(g['flaky'])}>{e(', '.join(g['flaky']) or 'none')}</td></tr>"
        )
    parts.append(
        "</table><table><tr><th>scenario</th><th>compared</th><th>passed</th><th>pass rate (95% CI)</th>"
        "<th>pass^k</th><th>pass@k</th><th>flakiness</th></tr>"
    )
    for s in scenario_stats(records):
        flaky = (
            f"<span class=flaky>{s['flakiness']:.2f} flaky</span>" if s["flaky"] else f"{s['flakiness']:.2f}"
        )
        parts.append(
            f"<tr><td>{e(s['suite'])} / {e(s['scenario'])}</td><td>{e(s['group'])}</td>"
            f"<td>{s['passed']}/{s['k']}</td><td class=rate>{_interval_bar(s)} {s['pass_rate']:.0%} ({_ci(s)})</td>"
            f"<td class={'pass' if s['pass_hat_k'] else 'fail'}>{_yes(s['pass_hat_k'])}</td>"
            f"<td class={'pass' if s['pass_at_k'] else 'fail'}>{_yes(s['pass_at_k'])}</td><td>{flaky}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _html_simulated(records: Sequence[dict[str, Any]]) -> list[str]:
    runs = _simulated(records)
    if not runs:
        return []
    e = html.escape
    parts = [
        "<h2>Simulated humans</h2><p class=meta>Their model calls are metered apart: these tokens are not in "
        "the teams' figures above.</p><table><tr><th>scenario</th><th>compared</th><th>run</th><th>model</th>"
        "<th>goal</th><th>what they said</th><th>calls</th><th>tokens</th></tr>"
    ]
    for r in runs:
        h = r["simulated_human"]
        said = "".join(
            f"<li>after turn {m['turn']}: “{e(m['text'][:300])}”{_joined(m)}</li>" for m in h["messages"]
        )
        parts.append(
            f"<tr><td>{e(r['scenario'])}</td><td>{e(group_key(r))}</td><td>{r['repeat']}</td>"
            f"<td><code>{e(h['model'])}</code></td><td>{e(h['goal'][:300])}</td>"
            f"<td>{f'<ul class=said>{said}</ul>' if said else 'nothing: the conversation kept to the goal'}</td>"
            f"<td>{h['calls']}</td><td>{h['total_tokens']:,}</td></tr>"
        )
    parts.append("</table>")
    return parts
