"""Evaluation output: results.jsonl (one line per scenario run), summary.md, and a self-contained report.html."""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any

from ..tools import write_atomically

FILES = ("results.jsonl", "summary.md", "report.html")


def group_key(record: dict[str, Any]) -> str:
    """What a report compares: the --compare variant, else the team (with its pattern)."""
    return record["variant"] or f"{record['team']} ({record['pattern'] or '?'})"


def summarise(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per compared side: pass rate, expectation counts, mean turns, tokens and latency, total cost."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["status"] != "interrupted":
            groups[group_key(r)].append(r)
    out = []
    for key, rs in groups.items():
        outcomes = [e["outcome"] for r in rs for e in r["expectations"]]
        costs = [r["cost_usd"] for r in rs]
        out.append({
            "group": key, "runs": len(rs), "passed": sum(r["passed"] for r in rs),
            "pass_rate": sum(r["passed"] for r in rs) / len(rs),
            "expectations_passed": outcomes.count("passed"), "expectations_failed": outcomes.count("failed"),
            "expectations_skipped": outcomes.count("skipped"), "errors": sum(r["status"] == "error" for r in rs),
            "mean_turns": mean(r["turns"] for r in rs), "mean_tokens": mean(r["total_tokens"] for r in rs),
            "mean_latency_s": mean(r["latency_s"] for r in rs),
            "cost_usd": None if any(c is None for c in costs) else sum(costs),
        })
    return out


def write_reports(out_dir: Path, records: Sequence[dict[str, Any]], *, title: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    write_atomically(out_dir / "results.jsonl", lines.encode())
    write_atomically(out_dir / "summary.md", markdown(records, title=title).encode())
    write_atomically(out_dir / "report.html", page(records, title=title).encode())
    return [out_dir / f for f in FILES]


def _cost(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def _failures(records: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(r, e) for r in records for e in r["expectations"] if e["outcome"] == "failed"]


def markdown(records: Sequence[dict[str, Any]], *, title: str) -> str:
    rows = summarise(records)
    lines = [f"# {title}", "", "| compared | pass rate | runs | expectations passed / failed / skipped | errors | "
             "mean turns | mean tokens | mean latency | cost |", "|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        lines.append(f"| {s['group']} | {s['pass_rate']:.0%} ({s['passed']}/{s['runs']}) | {s['runs']} | "
                     f"{s['expectations_passed']} / {s['expectations_failed']} / {s['expectations_skipped']} | "
                     f"{s['errors']} | {s['mean_turns']:.1f} | {s['mean_tokens']:,.0f} | {s['mean_latency_s']:.2f} s | "
                     f"{_cost(s['cost_usd'])} |")
    lines += ["", "## Scenarios", "", "| scenario | compared | run | result | stop | turns | tokens | latency | run id |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        verdict = {"interrupted": "interrupted", "error": "ERROR"}.get(r["status"], "pass" if r["passed"] else "FAIL")
        lines.append(f"| {r['suite']} / {r['scenario']} | {group_key(r)} | {r['repeat']} | {verdict} | "
                     f"{r['stop_reason'] or '-'} | {r['turns']} | {r['total_tokens']:,} | {r['latency_s']:.2f} s | "
                     f"{r['run_id'] or '-'} |")
    failures = _failures(records)
    if failures or any(r["error"] for r in records):
        lines += ["", "## Failures", ""]
        for r in records:
            if r["error"]:
                lines.append(f"- **{r['scenario']}** ({group_key(r)}, run {r['repeat']}): error: {r['error']}")
        for r, e in failures:
            lines.append(f"- **{r['scenario']}** ({group_key(r)}, run {r['repeat']}): `{e['kind']}: {json.dumps(e['value'])}`"
                         f" — {e['message']}")
            lines += [f"  - {ev}" for ev in e["evidence"]]
    skipped = [(r, e) for r in records for e in r["expectations"] if e["outcome"] == "skipped"]
    if skipped:
        lines += ["", f"{len(skipped)} expectation(s) skipped (not counted as passed): "
                  + "; ".join(sorted({e['message'] for _, e in skipped}))]
    return "\n".join(lines) + "\n"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(records: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(caption, base64 PNG): tokens, turns and latency per scenario, one bar per compared side."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    done = [r for r in records if r["status"] != "interrupted"]
    scenarios = list(dict.fromkeys(r["scenario"] for r in done))
    groups = list(dict.fromkeys(group_key(r) for r in done))
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    side_by_side = any(len({group_key(r) for r in done if r["scenario"] == sc}) > 1 for sc in scenarios)
    out = []
    lanes = groups if side_by_side else [""]
    height = 0.8 / len(lanes)
    for metric, caption in (("total_tokens", "Tokens per scenario"), ("turns", "Turns per scenario"),
                            ("latency_s", "Latency per scenario (s)")):
        # Horizontal bars: scenario names stay readable however many there are.
        fig, ax = plt.subplots(figsize=(5.2, 1.2 + 0.32 * len(scenarios) * len(lanes)))
        for li, lane in enumerate(lanes):
            ys, values = [], []
            for i, sc in enumerate(scenarios):
                rows = [r for r in done if r["scenario"] == sc and (not side_by_side or group_key(r) == lane)]
                if rows:
                    ys.append(i + (li - (len(lanes) - 1) / 2) * height)
                    values.append(mean(r[metric] for r in rows))
            bars = ax.barh(ys, values, height, color=colours[lane] if side_by_side else "#2f81f7", label=lane or None)
            ax.bar_label(bars, fmt="%.2f" if metric == "latency_s" else "%.0f", fontsize=7, padding=2)
        ax.set_yticks(range(len(scenarios)), scenarios, fontsize=8)
        ax.invert_yaxis()
        ax.margins(x=0.18)
        ax.tick_params(axis="x", labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
        if side_by_side:
            ax.legend(fontsize=7, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                      ncol=min(3, len(groups)))
        out.append((caption, _png(fig)))
        plt.close(fig)
    return out


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}.pass{color:#1a7f37;font-weight:600}
.fail{color:#cf222e;font-weight:600}.skip{color:#9a6700}.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:1rem}
.plots figure{margin:0}.plots img{width:100%;border:1px solid #d0d7de;border-radius:6px}
.plots figcaption{font-weight:600;margin-bottom:.3rem}.meta{color:#57606a}.rate{white-space:nowrap}
.track{display:inline-block;width:80px;height:.7rem;background:#eaeef2;border-radius:3px;vertical-align:middle}
.bar{display:block;height:100%;background:#1a7f37;border-radius:3px}
pre{white-space:pre-wrap;background:#f6f8fa;padding:.5rem;border-radius:6px;font-size:12px}
"""


def _context(records: Sequence[dict[str, Any]]) -> str:
    """When, with what: the date, parley's version, and the models each compared side ran on."""
    from datetime import UTC, datetime

    from .. import __version__

    sides = defaultdict(set)
    for r in records:
        sides[group_key(r)].add(r["model"])
    models = "; ".join(f"{g}: {', '.join(sorted(m))}" for g, m in sides.items())
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · parley {__version__} · {len(records)} runs · models: {models}"


def page(records: Sequence[dict[str, Any]], *, title: str) -> str:
    e = html.escape
    rows = summarise(records)
    parts = [f"<!doctype html><html lang=en><meta charset=utf-8><title>{e(title)}</title><style>{_CSS}</style>",
             f"<h1>{e(title)}</h1>", f"<p class=meta>{e(_context(records))}</p>", "<h2>Pass rate</h2><table><tr><th>compared</th><th>pass rate</th><th>runs</th>"
             "<th>expectations ✓ / ✗ / skipped</th><th>errors</th><th>mean turns</th><th>mean tokens</th>"
             "<th>mean latency</th><th>cost</th></tr>"]
    for s in rows:
        parts.append(f"<tr><td>{e(s['group'])}</td><td class=rate><span class=track><span class=bar "
                     f"style='width:{100 * s['pass_rate']:.0f}%'></span></span> "
                     f"{s['pass_rate']:.0%} ({s['passed']}/{s['runs']})</td><td>{s['runs']}</td>"
                     f"<td>{s['expectations_passed']} / {s['expectations_failed']} / {s['expectations_skipped']}</td>"
                     f"<td>{s['errors']}</td><td>{s['mean_turns']:.1f}</td><td>{s['mean_tokens']:,.0f}</td>"
                     f"<td>{s['mean_latency_s']:.2f} s</td><td>{_cost(s['cost_usd'])}</td></tr>")
    parts.append("</table>")
    if any(r["status"] != "interrupted" for r in records):
        parts.append("<h2>Metrics</h2><div class=plots>")
        for caption, data in plots(records):
            parts.append(f"<figure><figcaption>{e(caption)}</figcaption>"
                         f"<img alt='{e(caption)}' src='data:image/png;base64,{data}'></figure>")
        parts.append("</div>")
    ids = any(r["run_id"] for r in records)
    parts.append("<h2>Scenarios</h2><table><tr><th>scenario</th><th>compared</th><th>run</th><th>result</th>"
                 "<th>stop</th><th>turns</th><th>tokens</th><th>latency</th>" + ("<th>run id</th>" * ids) + "</tr>")
    for r in records:
        cls, word = (("skip", "interrupted") if r["status"] == "interrupted" else
                     ("fail", "error") if r["status"] == "error" else
                     ("pass", "pass") if r["passed"] else ("fail", "fail"))
        parts.append(f"<tr><td>{e(r['suite'])} / {e(r['scenario'])}</td><td>{e(group_key(r))}</td><td>{r['repeat']}</td>"
                     f"<td class={cls}>{word}</td><td>{e(str(r['stop_reason'] or '-'))}</td><td>{r['turns']}</td>"
                     f"<td>{r['total_tokens']:,}</td><td>{r['latency_s']:.2f} s</td>"
                     + (f"<td><code>{e(r['run_id'] or '-')}</code></td>" if ids else "") + "</tr>")
    parts.append("</table>")
    failing = [r for r in records if r["error"] or any(x["outcome"] == "failed" for x in r["expectations"])]
    if failing:
        parts.append("<h2>Failures</h2>")
    for r in failing:
        parts.append(f"<h3>{e(r['scenario'])} · {e(group_key(r))} · run {r['repeat']}</h3><ul>")
        if r["error"]:
            parts.append(f"<li class=fail>error: {e(r['error'])}</li>")
        for x in r["expectations"]:
            if x["outcome"] == "failed":
                ev = "".join(f"<li>{e(str(item))}</li>" for item in x["evidence"])
                parts.append(f"<li><span class=fail>{e(x['kind'])}: {e(json.dumps(x['value']))}</span> — "
                             f"{e(x['message'])}<ul>{ev}</ul></li>")
        parts.append("</ul>")
        if r.get("transcript"):
            said = "\n".join(f"[{m['turn']}] {m['source']}: {m['content'][:400]}" for m in r["transcript"][-8:])
            parts.append(f"<details><summary>last messages</summary><pre>{e(said)}</pre></details>")
    parts.append("</html>")
    return "\n".join(parts)
