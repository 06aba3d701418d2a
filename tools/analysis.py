"""Analysis: descriptive statistics, growth, a simple trend forecast, and charts saved in the workspace.

Everything here is offline and deterministic. Charts are drawn with matplotlib's thread-safe Figure
API on the Agg backend (no display, no pyplot state), imported on first use so loading the tool
registry stays fast.
"""

from __future__ import annotations

import io
import math
import re
import statistics
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from parley.tools import output_file, tool, write_atomically

CHART_DIR = "charts"
MAX_POINTS = 60
MAX_SLICES = 12
MAX_PERIODS = 12
Z95 = 1.96
_render_lock = threading.Lock()  # matplotlib's font and text caches are shared; draw one chart at a time

Values = Annotated[list[float], "The numbers, in order, e.g. [85383.28, 62201.84, 29439.68]"]
Labels = Annotated[
    list[str] | None, "Optional names for the values, same length and order, e.g. ['EMEA', 'APAC', 'LATAM']"
]


def _num(x: float) -> str:
    """A figure as shown in every output: thousands separators, two decimals."""
    return f"{x:,.2f}"


def _signed(x: float) -> str:
    return f"{x:+,.2f}"


def _pct(x: float, *, signed: bool = False) -> str:
    return f"{x:+.1f}%" if signed else f"{x:.1f}%"


def _check(values: Sequence[float], labels: Sequence[str] | None, what: str = "values") -> str | None:
    """Why the input cannot be used, or None."""
    if not values:
        return f"Error: no {what} given; pass at least one number."
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return f"Error: every one of the {what} must be a finite number."
    if labels is not None and len(labels) != len(values):
        return (
            f"Error: {len(labels)} labels for {len(values)} {what}: give exactly one label per value "
            "(same order), or no labels."
        )
    return None


def _names(labels: Sequence[str] | None, n: int) -> list[str]:
    return [str(x) for x in labels] if labels is not None else [f"period {i}" for i in range(1, n + 1)]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


@tool(family="analysis")
def compute_stats(values: Values, labels: Labels = None) -> str:
    """Descriptive statistics of a list of numbers: count, sum, mean, median, min and max (with their
    labels), standard deviation, and, when labels are given, each value's share of the total in %.

    Use it on figures from sql_query (e.g. revenue per region) instead of computing them yourself.
    Figures are returned with two decimals, shares with one (e.g. '43.0%').
    """
    if problem := _check(values, labels):
        return problem
    xs = [float(v) for v in values]
    names = _names(labels, len(xs))
    total = math.fsum(xs)
    low = min(range(len(xs)), key=lambda i: xs[i])
    high = max(range(len(xs)), key=lambda i: xs[i])
    tag = (lambda i: f" ({names[i]})") if labels is not None else (lambda i: "")
    lines = [
        f"Statistics of {len(xs)} values:",
        f"- count: {len(xs)}",
        f"- sum: {_num(total)}",
        f"- mean: {_num(statistics.fmean(xs))}",
        f"- median: {_num(statistics.median(xs))}",
        f"- min: {_num(xs[low])}{tag(low)}",
        f"- max: {_num(xs[high])}{tag(high)}",
        f"- std dev (population): {_num(statistics.pstdev(xs))}",
        f"- std dev (sample): {_num(statistics.stdev(xs)) if len(xs) > 1 else 'n/a (needs 2 values)'}",
    ]
    if labels is not None:
        if total == 0:
            lines.append("Share of total: n/a (the values sum to zero).")
        else:
            rows = [(name, _num(x), _pct(x / total * 100)) for name, x in zip(names, xs, strict=True)]
            lines += ["", "Share of total:", _table(("label", "value", "share"), rows)]
            if any(x < 0 for x in xs):
                lines.append("Note: some values are negative, so shares do not read as parts of a whole.")
    return "\n".join(lines)


@tool(family="analysis")
def growth(
    series: Annotated[list[float], "Values in time order, oldest first, e.g. quarterly revenue"],
    labels: Annotated[
        list[str] | None, "Optional period names, same order, e.g. ['2025-Q1', '2025-Q2']"
    ] = None,
) -> str:
    """Growth of a time series: the change and growth (%) from each period to the next, the total change
    from first to last, and the compound growth rate per period (CAGR) over the whole series.

    Growth is (value - previous) / |previous| x 100; a zero previous value gives 'n/a'. The compound
    rate is (last / first) ** (1 / (periods - 1)) - 1 and needs a positive first and non-negative last value.
    """
    if problem := _check(series, labels, "series values"):
        return problem
    xs = [float(v) for v in series]
    if len(xs) < 2:
        return "Error: growth needs at least 2 values (two periods)."
    names = _names(labels, len(xs))
    rows = [(names[0], _num(xs[0]), "", "")]
    for i in range(1, len(xs)):
        prev, cur = xs[i - 1], xs[i]
        rate = _pct((cur - prev) / abs(prev) * 100, signed=True) if prev != 0 else "n/a (zero base)"
        rows.append((names[i], _num(cur), _signed(cur - prev), rate))
    steps = len(xs) - 1
    first, last = xs[0], xs[-1]
    total_rate = (
        f" ({_pct((last - first) / abs(first) * 100, signed=True)})" if first != 0 else " (n/a: zero base)"
    )
    if first > 0 and last >= 0:
        cagr = _pct(((last / first) ** (1 / steps) - 1) * 100, signed=True)
    elif first == 0:
        cagr = "n/a (the first value is zero)"
    else:
        cagr = "n/a (needs a positive first value and a non-negative last value)"
    return "\n".join(
        [
            f"Growth over {len(xs)} periods ({names[0]} → {names[-1]}):",
            _table(("period", "value", "change", "growth"), rows),
            f"Total change {names[0]} → {names[-1]}: {_signed(last - first)}{total_rate}",
            f"Compound growth per period over {steps} period{'s' if steps > 1 else ''}: {cagr}",
        ]
    )


_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_INTEGER = re.compile(r"^\d{1,6}$")


def _next_labels(labels: Sequence[str] | None, n: int, periods: int) -> list[str]:
    """Names for the forecast periods, continuing '2025-Q3', '2025-07' or '2025' labels when it can."""
    last = labels[-1].strip() if labels else ""
    if m := _QUARTER.match(last):
        base = int(m[1]) * 4 + int(m[2]) - 1
        return [f"{(base + k) // 4}-Q{(base + k) % 4 + 1}" for k in range(1, periods + 1)]
    if m := _MONTH.match(last):
        base = int(m[1]) * 12 + int(m[2]) - 1
        return [f"{(base + k) // 12}-{(base + k) % 12 + 1:02d}" for k in range(1, periods + 1)]
    if _INTEGER.match(last):
        return [str(int(last) + k) for k in range(1, periods + 1)]
    return [f"period {n + k}" if labels is None else f"next {k}" for k in range(1, periods + 1)]


@tool(family="analysis")
def forecast(
    values: Annotated[list[float], "Past values in time order, oldest first (at least 3)"],
    periods: Annotated[int, "How many future periods to project (1 to 12)"] = 1,
    labels: Annotated[
        list[str] | None, "Optional period names of the past values, e.g. ['2025-Q1', '2025-Q2', '2025-Q3']"
    ] = None,
) -> str:
    """Project the next values of a time series with a simple, documented method: an ordinary
    least-squares straight line fitted to the values against their position (0, 1, 2, …), extended
    forward. Reports the fitted slope (change per period), R², and a naive 95% range of
    ±1.96 x the residual standard deviation. Needs at least 3 values; at most 12 periods ahead.

    It ignores seasonality and uncertainty in the trend itself: present the result as a rough
    trend-based estimate, not a prediction. Quarter ('2025-Q3'), month ('2025-07') and year labels
    are continued for the forecast periods.
    """
    if problem := _check(values, labels):
        return problem
    ys = [float(v) for v in values]
    n = len(ys)
    if n < 3:
        return f"Refused: a trend forecast needs at least 3 past values; got {n}. Give a longer series."
    if periods < 1:
        return "Error: periods must be at least 1."
    capped = periods > MAX_PERIODS
    periods = min(periods, MAX_PERIODS)
    x_mean = (n - 1) / 2
    y_mean = math.fsum(ys) / n
    sxx = math.fsum((i - x_mean) ** 2 for i in range(n))
    slope = math.fsum((i - x_mean) * (y - y_mean) for i, y in enumerate(ys)) / sxx
    intercept = y_mean - slope * x_mean
    residuals = [y - (intercept + slope * i) for i, y in enumerate(ys)]
    sse = math.fsum(r * r for r in residuals)
    sst = math.fsum((y - y_mean) ** 2 for y in ys)
    resid_std = math.sqrt(sse / (n - 2))
    r2 = f"{1 - sse / sst:.3f}" if sst > 0 else "n/a (all values equal)"
    margin = Z95 * resid_std
    names = _next_labels(labels, n, periods)
    rows = []
    for k, name in enumerate(names):
        point = intercept + slope * (n + k)
        rows.append((name, _num(point), _num(point - margin), _num(point + margin)))
    lines = [
        f"Forecast by ordinary least-squares linear trend on the period index (0 … {n - 1}), fitted to {n} values:",
        f"value ≈ {_num(intercept)} {'+' if slope >= 0 else '-'} {_num(abs(slope))} × index "
        f"(slope {_signed(slope)} per period, R² {r2}, residual std dev {_num(resid_std)})",
        _table(("period", "forecast", "low (95%)", "high (95%)"), rows),
        f"Range: naive ±1.96 × residual std dev (±{_num(margin)}); it ignores seasonality and uncertainty "
        "in the trend itself, so present it as a rough estimate.",
    ]
    if capped:
        lines.append(f"Note: periods capped at {MAX_PERIODS}.")
    return "\n".join(lines)


def _chart_target(filename: str) -> tuple[Path, str]:
    return output_file(filename, CHART_DIR, ".png", "q3_revenue.png")


def _short(x: float) -> str:
    """A value label drawn on a chart."""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:,.2f}".rstrip("0").rstrip(".")


def _render(kind: str, title: str, labels: list[str], values: list[float], series_name: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; harmless if pyplot picked one already
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    try:
        ax = fig.add_subplot()
        if kind == "pie":
            ax.pie(
                values,
                labels=labels,
                autopct="%1.1f%%",
                startangle=90,
                counterclock=False,
                wedgeprops={"linewidth": 1, "edgecolor": "white"},
            )
            ax.set_aspect("equal")
        else:
            positions = list(range(len(values)))
            if kind == "bar":
                bars = ax.bar(positions, values, color="#3b6ea5", label=series_name or None)
                ax.bar_label(bars, labels=[_short(v) for v in values], padding=3, fontsize=9)
            else:
                ax.plot(positions, values, marker="o", color="#3b6ea5", label=series_name or None)
                if len(values) <= 24:
                    for x, y in zip(positions, values, strict=True):
                        ax.annotate(
                            _short(y),
                            (x, y),
                            textcoords="offset points",
                            xytext=(0, 6),
                            ha="center",
                            fontsize=9,
                        )
            ax.set_xticks(positions, labels)
            if len(labels) > 6 or max(len(s) for s in labels) > 12:
                ax.tick_params(axis="x", labelrotation=30)
                for tick in ax.get_xticklabels():
                    tick.set_horizontalalignment("right")
            ax.margins(y=0.15)
            ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}" if abs(v) >= 100 else f"{v:g}")
            ax.spines[["top", "right"]].set_visible(False)
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
            if series_name:
                ax.set_ylabel(series_name)
        ax.set_title(title, fontsize=14, fontweight="bold")
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png")
        return out.getvalue()
    finally:
        fig.clear()


@tool(family="analysis")
def make_chart(
    kind: Annotated[
        Literal["bar", "line", "pie"], "'bar' to compare categories, 'line' for a trend, 'pie' for shares"
    ],
    title: Annotated[str, "The chart's title, e.g. 'Q3 2025 revenue by region'"],
    labels: Annotated[list[str], "Category or period names, e.g. ['EMEA', 'North America', 'APAC']"],
    values: Annotated[list[float], "One number per label, same order"],
    filename: Annotated[
        str, "A plain file name ending in .png (no folders), e.g. 'q3_revenue.png'"
    ] = "chart.png",
    series_name: Annotated[str, "What the values measure, shown on the axis, e.g. 'Revenue (USD)'"] = "",
) -> str:
    """Draw a bar, line or pie chart as a PNG image in this conversation's workspace, under charts/.
    Bars and line points are labelled with their values; pie slices with their share in %.

    Returns the saved path (e.g. 'charts/q3_revenue.png'); the people in the chat see the image, and
    make_slides can put it on a slide. Saving under an existing name replaces that chart.
    """
    if problem := _check(values, labels):
        return problem
    if len(values) > MAX_POINTS:
        return f"Refused: {len(values)} values is more than a readable chart holds ({MAX_POINTS}); aggregate first."
    if kind not in ("bar", "line", "pie"):
        return f"Error: kind must be 'bar', 'line' or 'pie', not {kind!r}."
    if kind == "pie":
        if any(v < 0 for v in values) or not any(v > 0 for v in values):
            return "Refused: a pie chart needs non-negative values with a positive total; use a bar chart."
        if len(values) > MAX_SLICES:
            return (
                f"Refused: {len(values)} slices make an unreadable pie (at most {MAX_SLICES}); use a bar "
                "chart, or group the small ones into 'Other'."
            )
    try:
        target, shown = _chart_target(filename)
    except ValueError as exc:
        return f"Refused: {exc}"
    with _render_lock:
        data = _render(
            kind, title.strip(), [str(s) for s in labels], [float(v) for v in values], series_name.strip()
        )
    write_atomically(target, data)
    count = f"{len(values)} {'slices' if kind == 'pie' else 'bars' if kind == 'bar' else 'points'}"
    return (
        f"Chart saved as {shown} ({kind} chart, {count}, {len(data):,} bytes). "
        f"To put it on a slide, pass chart='{shown}' to make_slides."
    )
