"""Evaluation output: results.jsonl (one line per scenario run), summary.md, and a self-contained report.html."""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from ..tools import write_atomically
from ._findings_report import findings_html, findings_markdown
from ._stats import html_sections, markdown_sections

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
    out: list[dict[str, Any]] = []
    for key, rs in groups.items():
        outcomes = [e["outcome"] for r in rs for e in r["expectations"]]
        costs = [r["cost_usd"] for r in rs]
        out.append(
            {
                "group": key,
                "runs": len(rs),
                "passed": sum(r["passed"] for r in rs),
                "pass_rate": sum(r["passed"] for r in rs) / len(rs),
                "expectations_passed": outcomes.count("passed"),
                "expectations_failed": outcomes.count("failed"),
                "expectations_skipped": outcomes.count("skipped"),
                "errors": sum(r["status"] == "error" for r in rs),
                "mean_turns": mean(r["turns"] for r in rs),
                "mean_tokens": mean(r["total_tokens"] for r in rs),
                "mean_latency_s": mean(r["latency_s"] for r in rs),
                "cost_usd": None if any(c is None for c in costs) else sum(costs),
            }
        )
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


def _verdict_word(r: dict[str, Any]) -> str:
    return {"interrupted": "interrupted", "error": "ERROR"}.get(
        r["status"], "pass" if r["passed"] else "FAIL"
    )


def _md_summary(records: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| compared | pass rate | runs | expectations passed / failed / skipped | errors | "
        "mean turns | mean tokens | mean latency | cost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summarise(records):
        lines.append(
            f"| {s['group']} | {s['pass_rate']:.0%} ({s['passed']}/{s['runs']}) | {s['runs']} | "
            f"{s['expectations_passed']} / {s['expectations_failed']} / {s['expectations_skipped']} | "
            f"{s['errors']} | {s['mean_turns']:.1f} | {s['mean_tokens']:,.0f} | {s['mean_latency_s']:.2f} s | "
            f"{_cost(s['cost_usd'])} |"
        )
    return lines


def _md_scenarios(records: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "## Scenarios",
        "",
        "| scenario | compared | run | result | stop | turns | tokens | latency | run id |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['suite']} / {r['scenario']} | {group_key(r)} | {r['repeat']} | {_verdict_word(r)} | "
            f"{r['stop_reason'] or '-'} | {r['turns']} | {r['total_tokens']:,} | {r['latency_s']:.2f} s | "
            f"{r['run_id'] or '-'} |"
        )
    return lines


def _md_failures(records: Sequence[dict[str, Any]]) -> list[str]:
    failures = _failures(records)
    if not failures and not any(r["error"] for r in records):
        return []
    lines = ["", "## Failures", ""]
    lines += [
        f"- **{r['scenario']}** ({group_key(r)}, run {r['repeat']}): error: {r['error']}"
        for r in records
        if r["error"]
    ]
    for r, e in failures:
        lines.append(
            f"- **{r['scenario']}** ({group_key(r)}, run {r['repeat']}): `{e['kind']}: {json.dumps(e['value'])}`"
            f" — {e['message']}"
        )
        lines += [f"  - {ev}" for ev in e["evidence"]]
    return lines


def _md_skipped(records: Sequence[dict[str, Any]]) -> list[str]:
    skipped = [e for r in records for e in r["expectations"] if e["outcome"] == "skipped"]
    if not skipped:
        return []
    return [
        "",
        f"{len(skipped)} expectation(s) skipped (not counted as passed): "
        + "; ".join(sorted({e["message"] for e in skipped})),
    ]


def markdown(records: Sequence[dict[str, Any]], *, title: str) -> str:
    lines = [
        f"# {title}",
        "",
        *_md_summary(records),
        "",
        *_md_scenarios(records),
        *_md_failures(records),
        *_md_skipped(records),
        *findings_markdown(records, group_key),
        *markdown_sections(records),  # repeat statistics, baseline marks, simulated humans
    ]
    return "\n".join(lines) + "\n"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


METRICS = (
    ("total_tokens", "Tokens per scenario"),
    ("turns", "Turns per scenario"),
    ("latency_s", "Latency per scenario (s)"),
)


@dataclass
class _Layout:
    """Where the bars of a metric plot go: one row per scenario, one lane per compared side when sides differ."""

    done: list[dict[str, Any]]
    scenarios: list[str]
    groups: list[str]
    side_by_side: bool

    @classmethod
    def of(cls, records: Sequence[dict[str, Any]]) -> _Layout:
        done = [r for r in records if r["status"] != "interrupted"]
        scenarios = list(dict.fromkeys(r["scenario"] for r in done))
        side_by_side = any(len({group_key(r) for r in done if r["scenario"] == sc}) > 1 for sc in scenarios)
        return cls(done, scenarios, list(dict.fromkeys(group_key(r) for r in done)), side_by_side)

    @property
    def lanes(self) -> list[str]:
        return self.groups if self.side_by_side else [""]

    def bars(self, lane_index: int, metric: str) -> tuple[list[float], list[float]]:
        """(y positions, mean values) of one lane's bars."""
        lanes = self.lanes
        height = 0.8 / len(lanes)
        ys: list[float] = []
        values: list[float] = []
        for i, sc in enumerate(self.scenarios):
            rows = [
                r
                for r in self.done
                if r["scenario"] == sc and (not self.side_by_side or group_key(r) == lanes[lane_index])
            ]
            if rows:
                ys.append(i + (lane_index - (len(lanes) - 1) / 2) * height)
                values.append(mean(r[metric] for r in rows))
        return ys, values


def _plot(plt: Any, layout: _Layout, metric: str) -> Any:
    """One metric's figure: horizontal bars, so scenario names stay readable however many there are."""
    lanes = layout.lanes
    height = 0.8 / len(lanes)
    fig, ax = plt.subplots(figsize=(5.2, 1.2 + 0.32 * len(layout.scenarios) * len(lanes)))
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(layout.groups)}
    for li, lane in enumerate(lanes):
        ys, values = layout.bars(li, metric)
        colour = colours[lane] if layout.side_by_side else "#2f81f7"
        bars = ax.barh(ys, values, height, color=colour, label=lane or None)
        ax.bar_label(bars, fmt="%.2f" if metric == "latency_s" else "%.0f", fontsize=7, padding=2)
    ax.set_yticks(range(len(layout.scenarios)), layout.scenarios, fontsize=8)
    ax.invert_yaxis()
    ax.margins(x=0.18)
    ax.tick_params(axis="x", labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    if layout.side_by_side:
        ax.legend(
            fontsize=7,
            frameon=False,
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
            ncol=min(3, len(layout.groups)),
        )
    return fig


def plots(records: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(caption, base64 PNG): tokens, turns and latency per scenario, one bar per compared side."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    layout = _Layout.of(records)
    out: list[tuple[str, str]] = []
    for metric, caption in METRICS:
        fig = _plot(plt, layout, metric)
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

    sides: defaultdict[str, set[str]] = defaultdict(set)
    for r in records:
        sides[group_key(r)].add(r["model"])
    models = "; ".join(f"{g}: {', '.join(sorted(m))}" for g, m in sides.items())
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · parley {__version__} · {len(records)} runs · models: {models}"


def _html_summary(records: Sequence[dict[str, Any]]) -> list[str]:
    e = html.escape
    parts = [
        "<h2>Pass rate</h2><table><tr><th>compared</th><th>pass rate</th><th>runs</th>"
        "<th>expectations ✓ / ✗ / skipped</th><th>errors</th><th>mean turns</th><th>mean tokens</th>"
        "<th>mean latency</th><th>cost</th></tr>"
    ]
    for s in summarise(records):
        parts.append(
            f"<tr><td>{e(s['group'])}</td><td class=rate><span class=track><span class=bar "
            f"style='width:{100 * s['pass_rate']:.0f}%'></span></span> "
            f"{s['pass_rate']:.0%} ({s['passed']}/{s['runs']})</td><td>{s['runs']}</td>"
            f"<td>{s['expectations_passed']} / {s['expectations_failed']} / {s['expectations_skipped']}</td>"
            f"<td>{s['errors']}</td><td>{s['mean_turns']:.1f}</td><td>{s['mean_tokens']:,.0f}</td>"
            f"<td>{s['mean_latency_s']:.2f} s</td><td>{_cost(s['cost_usd'])}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _html_plots(records: Sequence[dict[str, Any]]) -> list[str]:
    if not any(r["status"] != "interrupted" for r in records):
        return []
    e = html.escape
    figures = [
        f"<figure><figcaption>{e(caption)}</figcaption>"
        f"<img alt='{e(caption)}' src='data:image/png;base64,{data}'></figure>"
        for caption, data in plots(records)
    ]
    return ["<h2>Metrics</h2><div class=plots>", *figures, "</div>"]


_RESULT_CELL = {"interrupted": ("skip", "interrupted"), "error": ("fail", "error")}


def _html_scenarios(records: Sequence[dict[str, Any]]) -> list[str]:
    e = html.escape
    ids = any(r["run_id"] for r in records)
    parts = [
        "<h2>Scenarios</h2><table><tr><th>scenario</th><th>compared</th><th>run</th><th>result</th>"
        "<th>stop</th><th>turns</th><th>tokens</th><th>latency</th>" + ("<th>run id</th>" * ids) + "</tr>"
    ]
    for r in records:
        cls, word = _RESULT_CELL.get(r["status"], ("pass", "pass") if r["passed"] else ("fail", "fail"))
        parts.append(
            f"<tr><td>{e(r['suite'])} / {e(r['scenario'])}</td><td>{e(group_key(r))}</td><td>{r['repeat']}</td>"
            f"<td class={cls}>{word}</td><td>{e(str(r['stop_reason'] or '-'))}</td><td>{r['turns']}</td>"
            f"<td>{r['total_tokens']:,}</td><td>{r['latency_s']:.2f} s</td>"
            + (f"<td><code>{e(r['run_id'] or '-')}</code></td>" if ids else "")
            + "</tr>"
        )
    parts.append("</table>")
    return parts


def _html_failure(r: dict[str, Any]) -> list[str]:
    """One failing run: its error, its failed expectations with their evidence, its last messages."""
    e = html.escape
    parts = [f"<h3>{e(r['scenario'])} · {e(group_key(r))} · run {r['repeat']}</h3><ul>"]
    if r["error"]:
        parts.append(f"<li class=fail>error: {e(r['error'])}</li>")
    for x in r["expectations"]:
        if x["outcome"] == "failed":
            ev = "".join(f"<li>{e(str(item))}</li>" for item in x["evidence"])
            parts.append(
                f"<li><span class=fail>{e(x['kind'])}: {e(json.dumps(x['value']))}</span> — "
                f"{e(x['message'])}<ul>{ev}</ul></li>"
            )
    parts.append("</ul>")
    if r.get("transcript"):
        said = "\n".join(f"[{m['turn']}] {m['source']}: {m['content'][:400]}" for m in r["transcript"][-8:])
        parts.append(f"<details><summary>last messages</summary><pre>{e(said)}</pre></details>")
    return parts


def _html_failures(records: Sequence[dict[str, Any]]) -> list[str]:
    failing = [r for r in records if r["error"] or any(x["outcome"] == "failed" for x in r["expectations"])]
    return (["<h2>Failures</h2>"] if failing else []) + [p for r in failing for p in _html_failure(r)]


def page(records: Sequence[dict[str, Any]], *, title: str) -> str:
    e = html.escape
    parts = [
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{e(title)}</title><style>{_CSS}</style>",
        f"<h1>{e(title)}</h1>",
        f"<p class=meta>{e(_context(records))}</p>",
        *_html_summary(records),
        *_html_plots(records),
        *_html_scenarios(records),
        *_html_failures(records),
        *findings_html(records, group_key),
        *html_sections(records),  # repeat statistics, baseline marks, simulated humans
        "</html>",
    ]
    return "\n".join(parts)
