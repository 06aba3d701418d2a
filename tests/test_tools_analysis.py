"""Statistics, growth, forecast, charts and slide decks, through the registry as roles get them."""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE

from parley.engine.autogen.tools import as_function_tool
from parley.tools import RunContext, ToolRegistry, use_context

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"
REGIONS = ["EMEA", "North America", "APAC", "LATAM"]
REVENUE = [85383.28, 62201.84, 29439.68, 21445.02]


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Path]:
    workspace = tmp_path / "ws"  # not created: the tools make their folders
    with use_context(RunContext(workspace=workspace, role="analyst")):
        yield workspace


def fn(reg: ToolRegistry, name: str) -> Callable[..., str]:
    return reg.get(name).func


def table_rows(text: str) -> list[list[str]]:
    """The body cells of the first Markdown table in a tool's output."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def deck_text(path: Path) -> list[list[str]]:
    """The text of every shape, slide by slide."""
    return [
        [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]
        for slide in Presentation(str(path)).slides
    ]


def pictures(slide: Any) -> int:
    return sum(shape.shape_type == MSO_SHAPE_TYPE.PICTURE for shape in slide.shapes)


def test_families_and_schemas(reg: ToolRegistry) -> None:
    for name in ("compute_stats", "growth", "forecast", "make_chart"):
        assert reg.get(name).family == "analysis"
    assert reg.get("make_slides").family == "documents"
    kind = as_function_tool(reg.get("make_chart")).schema["parameters"]["properties"]["kind"]
    assert kind["enum"] == ["bar", "line", "pie"] and kind["description"]
    schema = as_function_tool(reg.get("make_slides")).schema
    assert schema["parameters"]["required"] == ["title", "slides"]
    slides = schema["parameters"]["properties"]["slides"]
    assert slides["type"] == "array" and slides["description"]
    item = slides["items"]
    if "$ref" in item:  # a shared definition rather than inlined: both are valid JSON schema
        item = schema["parameters"]["$defs"][item["$ref"].rsplit("/", 1)[-1]]
    assert set(item["properties"]) == {"headline", "bullets", "chart", "notes"}
    assert item["required"] == ["headline"]
    assert all(p["description"] for p in item["properties"].values())


def test_compute_stats(reg: ToolRegistry) -> None:
    out = fn(reg, "compute_stats")([10, 20, 30, 40], ["a", "b", "c", "d"])
    for line in (
        "- count: 4",
        "- sum: 100.00",
        "- mean: 25.00",
        "- median: 25.00",
        "- min: 10.00 (a)",
        "- max: 40.00 (d)",
        "- std dev (population): 11.18",  # sqrt(500 / 4)
        "- std dev (sample): 12.91",  # sqrt(500 / 3)
    ):
        assert line in out.splitlines(), line
    assert table_rows(out) == [
        ["a", "10.00", "10.0%"],
        ["b", "20.00", "20.0%"],
        ["c", "30.00", "30.0%"],
        ["d", "40.00", "40.0%"],
    ]
    unlabelled = fn(reg, "compute_stats")([3, 1, 2])
    assert "- median: 2.00" in unlabelled and "- min: 1.00\n" in unlabelled and "Share" not in unlabelled
    assert "n/a" in fn(reg, "compute_stats")([7])  # no sample std dev of one value
    assert fn(reg, "compute_stats")([]).startswith("Error: no values")
    assert fn(reg, "compute_stats")([1, 2], ["a"]).startswith("Error: 1 labels for 2 values")
    assert "sum to zero" in fn(reg, "compute_stats")([5, -5], ["up", "down"])


def test_growth(reg: ToolRegistry) -> None:
    out = fn(reg, "growth")([100, 110, 0, 50], ["Q1", "Q2", "Q3", "Q4"])
    assert table_rows(out) == [
        ["Q1", "100.00", "", ""],
        ["Q2", "110.00", "+10.00", "+10.0%"],
        ["Q3", "0.00", "-110.00", "-100.0%"],
        ["Q4", "50.00", "+50.00", "n/a (zero base)"],
    ]
    assert "Total change Q1 → Q4: -50.00 (-50.0%)" in out
    assert "Compound growth per period over 3 periods: -20.6%" in out  # 0.5 ** (1/3) - 1
    steady = fn(reg, "growth")([100, 121, 146.41])
    assert "Compound growth per period over 2 periods: +21.0%" in steady
    assert "period 3 | 146.41 | +25.41 | +21.0%" in steady
    assert "n/a (the first value is zero)" in fn(reg, "growth")([0, 5, 10])
    assert fn(reg, "growth")([5]).startswith("Error:")
    assert fn(reg, "growth")([1, 2], ["a", "b", "c"]).startswith("Error:")


def test_forecast_is_a_least_squares_line(reg: ToolRegistry) -> None:
    quarters = ["2024-Q3", "2024-Q4", "2025-Q1", "2025-Q2", "2025-Q3"]
    out = fn(reg, "forecast")([10, 12, 15, 15, 18], 3, quarters)
    # x = 0..4, mean 2; y mean 14; Sxy = 19, Sxx = 10 → slope 1.9, intercept 10.2.
    # Residuals -0.2 -0.1 1 -0.9 0.2: SSE 1.9, std sqrt(1.9 / 3) = 0.7958, ±1.96·std = ±1.56; R² 1 - 1.9/38.
    assert "ordinary least-squares linear trend" in out
    assert "value ≈ 10.20 + 1.90 × index (slope +1.90 per period, R² 0.950, residual std dev 0.80)" in out
    assert table_rows(out) == [
        ["2025-Q4", "19.70", "18.14", "21.26"],
        ["2026-Q1", "21.60", "20.04", "23.16"],
        ["2026-Q2", "23.50", "21.94", "25.06"],
    ]
    assert "±1.56" in out
    exact = fn(reg, "forecast")([2, 4, 6])
    assert table_rows(exact) == [["period 4", "8.00", "8.00", "8.00"]]
    years = fn(reg, "forecast")([3, 2, 1], 2, ["2022", "2023", "2024"])
    assert table_rows(years) == [["2025", "0.00", "0.00", "0.00"], ["2026", "-1.00", "-1.00", "-1.00"]]
    assert "slope -1.00" in years
    assert fn(reg, "forecast")([1, 2]).startswith("Refused: a trend forecast needs at least 3")
    capped = fn(reg, "forecast")([1, 2, 3], 50)
    assert len(table_rows(capped)) == 12 and "capped at 12" in capped
    assert fn(reg, "forecast")([1, 2, 3], 0).startswith("Error:")


@pytest.mark.parametrize("kind", ["bar", "line", "pie"])
def test_make_chart_writes_a_png_in_the_workspace(reg: ToolRegistry, ws: Path, kind: str) -> None:
    make_chart = fn(reg, "make_chart")
    make_chart(kind, "warm-up", ["a"], [1], "warmup.png")  # the first call imports matplotlib
    out = make_chart(kind, "Q3 revenue by region", REGIONS, REVENUE, f"q3_{kind}.png", "Revenue (USD)")
    assert out.startswith(f"Chart saved as charts/q3_{kind}.png ({kind} chart, 4 ")
    data = (ws / "charts" / f"q3_{kind}.png").read_bytes()
    assert png_size(data) == (960, 540)
    assert len(data) > 10_000  # a drawn chart, not an empty canvas
    assert sorted(p.name for p in (ws / "charts").iterdir()) == sorted(["warmup.png", f"q3_{kind}.png"])
    if "matplotlib.pyplot" in sys.modules:  # the tool never uses pyplot, so it cannot leave figures open
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_make_chart_refusals(reg: ToolRegistry, ws: Path, tmp_path: Path) -> None:
    make_chart = fn(reg, "make_chart")
    for bad in ("../x.png", "sub/x.png", "..\\x.png", "/tmp/x.png"):
        assert make_chart("bar", "t", ["a"], [1], bad).startswith("Refused: "), bad
    for bad in ("x.txt", ".png", "x.png.exe"):
        assert make_chart("bar", "t", ["a"], [1], bad).startswith("Refused: "), bad
    assert not (tmp_path / "x.png").exists()
    assert make_chart("pie", "t", ["a", "b"], [3, -1], "p.png").startswith("Refused: a pie chart")
    assert make_chart("bar", "t", ["a", "b"], [1], "b.png").startswith("Error: 2 labels for 1 values")
    assert make_chart("bar", "t", [], [], "b.png").startswith("Error: no values")
    assert not (ws / "charts").exists() or not any((ws / "charts").iterdir())


def test_make_chart_from_threads(reg: ToolRegistry, tmp_path: Path) -> None:
    ctx = RunContext(workspace=tmp_path / "ws", role="analyst")

    def draw(i: int) -> str:
        with use_context(ctx):
            return fn(reg, "make_chart")(
                "bar", f"chart {i}", REGIONS, [v * (i + 1) for v in REVENUE], f"c{i}.png"
            )

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(draw, range(8)))
    assert all(o.startswith("Chart saved as charts/c") for o in outs), outs
    assert all(
        png_size((ctx.workspace / "charts" / f"c{i}.png").read_bytes()) == (960, 540) for i in range(8)
    )


def test_make_slides_writes_a_deck(reg: ToolRegistry, ws: Path) -> None:
    assert fn(reg, "make_chart")("bar", "Q3", REGIONS, REVENUE, "q3.png").startswith("Chart saved")
    out = fn(reg, "make_slides")(
        "Q3 2025 sales review",
        [
            {
                "headline": "EMEA leads with 43.0%",
                "bullets": ["EMEA: 85,383.28 (43.0%)", "  ahead of plan", "- LATAM: 21,445.02 (10.8%)"],
                "chart": "charts/q3.png",
                "notes": "Mention the EMEA campaign.",
            },
            {"headline": "Next steps", "bullets": ["Grow APAC by 10%"]},
        ],
        "q3.pptx",
    )
    assert out.startswith("Deck saved as decks/q3.pptx (3 slides, ")
    assert out.splitlines()[1:] == [
        "1. Q3 2025 sales review (title slide)",
        "2. EMEA leads with 43.0% (3 bullets, chart charts/q3.png, notes)",
        "3. Next steps (1 bullet)",
    ]
    path = ws / "decks" / "q3.pptx"
    deck = Presentation(str(path))
    title, first, second = deck.slides
    assert deck_text(path) == [
        ["Q3 2025 sales review"],
        ["EMEA leads with 43.0%", "EMEA: 85,383.28 (43.0%)\nahead of plan\nLATAM: 21,445.02 (10.8%)"],
        ["Next steps", "Grow APAC by 10%"],
    ]
    body = next(s for s in first.placeholders if s.placeholder_format.idx == 1)
    assert [p.level for p in body.text_frame.paragraphs] == [0, 1, 0]
    assert [pictures(s) for s in deck.slides] == [0, 1, 0]
    picture = next(s for s in first.shapes if s.shape_type == MSO_SHAPE_TYPE.PICTURE)
    for shape in first.shapes:  # everything on the page, and the chart beside the bullets
        assert shape.left >= 0 and shape.left + shape.width <= deck.slide_width
        assert shape.top >= 0 and shape.top + shape.height <= deck.slide_height
    assert picture.left >= body.left + body.width
    assert first.notes_slide.notes_text_frame.text == "Mention the EMEA campaign."
    assert not title.has_notes_slide and not second.has_notes_slide


def test_make_slides_refusals(reg: ToolRegistry, ws: Path, tmp_path: Path) -> None:
    make_slides = fn(reg, "make_slides")
    (tmp_path / "outside.png").write_bytes(PNG)
    ok = {"headline": "Fine", "bullets": ["x"]}
    missing = make_slides("Deck", [ok, {"headline": "Chart", "chart": "charts/missing.png"}])
    assert missing.startswith("Refused: slide 3 ('Chart'): chart 'charts/missing.png' does not exist")
    escaping = make_slides("Deck", [{"headline": "Out", "chart": "../outside.png"}])
    assert escaping.startswith("Refused: slide 2 ('Out'): chart '../outside.png' leaves the workspace")
    assert make_slides("Deck", [{"headline": "Abs", "chart": str(tmp_path / "outside.png")}]).startswith(
        "Refused:"
    )
    assert make_slides("Deck", [ok], "../deck.pptx").startswith("Refused:")
    assert make_slides("Deck", [ok], "deck.ppt").startswith("Refused:")
    assert make_slides("Deck", []).startswith("Error:")
    assert make_slides("Deck", [{"bullets": ["no headline"]}]).startswith(
        "Error: the slides are malformed: slides[0]"
    )
    assert not (ws / "decks").exists() or not any((ws / "decks").iterdir())


def test_q3_sales_to_presentation_without_a_model(
    reg: ToolRegistry, ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow a team runs for "Q3 sales by region as a presentation", with the tool calls scripted."""
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    table = fn(reg, "sql_query")(
        "SELECT region, ROUND(SUM(revenue), 2) AS revenue FROM sales WHERE quarter = '2025-Q3' "
        "GROUP BY region ORDER BY revenue DESC"
    )
    rows = table_rows(table)
    regions, revenue = [r[0] for r in rows], [float(r[1]) for r in rows]
    assert set(regions) == set(REGIONS)

    stats = fn(reg, "compute_stats")(revenue, regions)
    total = math.fsum(revenue)
    assert f"- sum: {total:,.2f}" in stats
    assert f"- max: {revenue[0]:,.2f} ({regions[0]})" in stats
    shares = {r[0]: r[2] for r in table_rows(stats.split("Share of total:")[1])}
    assert shares == {
        name: f"{value / total * 100:.1f}%" for name, value in zip(regions, revenue, strict=True)
    }

    chart = fn(reg, "make_chart")(
        "bar", "Q3 2025 revenue by region", regions, revenue, "q3_revenue.png", "USD"
    )
    assert chart.startswith("Chart saved as charts/q3_revenue.png")
    bullets = [f"{name}: {value:,.2f} ({shares[name]})" for name, value in zip(regions, revenue, strict=True)]
    deck = fn(reg, "make_slides")(
        "Q3 2025 sales review",
        [
            {
                "headline": f"{regions[0]} leads Q3 with {shares[regions[0]]}",
                "bullets": bullets,
                "chart": "charts/q3_revenue.png",
            },
            {"headline": "Total", "bullets": [f"Q3 revenue: {total:,.2f}"]},
        ],
        "q3_review.pptx",
    )
    assert deck.startswith("Deck saved as decks/q3_review.pptx (3 slides")

    path = ws / "decks" / "q3_review.pptx"
    text = "\n".join("\n".join(shapes) for shapes in deck_text(path))
    for name, value in zip(regions, revenue, strict=True):
        assert f"{name}: {value:,.2f} ({shares[name]})" in text
    assert f"Q3 revenue: {total:,.2f}" in text
    assert [pictures(s) for s in Presentation(str(path)).slides] == [0, 1, 0]
    assert sorted(str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_file()) == [
        "charts/q3_revenue.png",
        "decks/q3_review.pptx",
    ]


def test_a_slide_with_only_a_chart_gives_it_the_whole_width(reg: ToolRegistry, ws: Path) -> None:
    assert fn(reg, "make_chart")("bar", "Q3", REGIONS, REVENUE, "q3.png").startswith("Chart saved")
    out = fn(reg, "make_slides")(
        "Deck", [{"headline": "Q3 by region", "chart": "charts/q3.png"}], "only.pptx"
    )
    assert out.splitlines()[1:] == [
        "1. Deck (title slide)",
        "2. Q3 by region (0 bullets, chart charts/q3.png)",
    ]
    deck = Presentation(str(ws / "decks" / "only.pptx"))
    cover, page = deck.slides
    assert [s.placeholder_format.idx for s in cover.placeholders] == [0]  # the empty subtitle box is gone
    assert [s.placeholder_format.idx for s in page.placeholders] == [0]  # no empty bullet box either
    picture = next(s for s in page.shapes if s.shape_type == MSO_SHAPE_TYPE.PICTURE)
    middle = picture.left + picture.width // 2
    assert abs(middle - deck.slide_width // 2) <= deck.slide_width // 100  # centred across the page
    assert picture.width > deck.slide_width * 0.6
