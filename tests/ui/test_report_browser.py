"""An evaluation report in a real browser: `parley eval --compare` writes report.html, Chromium opens it.

The page must load without console or page errors, and each plot must be a decoded image with
something drawn on it (a blank or broken PNG fails). Set PARLEY_UI_SHOTS=/some/folder to keep a
screenshot of the whole report.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from chat_started import evaluate
from PIL import Image

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
COMPARE = ("content-pipeline", "content-studio")
PLOTS = ("Tokens per scenario", "Turns per scenario", "Latency per scenario (s)")


def _parley(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("parley")
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "parley.cli", *args]


def _compare_report(out: Path) -> Path:
    """Run the patterns suite against both content teams, as a user would (the browser's own event loop
    is running in this process, so the evaluation runs in another one)."""
    done = subprocess.run(
        _parley(
            "eval", "evals/patterns.yaml", "--compare", ",".join(COMPARE), "--no-save", "--out", str(out)
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"parley eval failed:\n{done.stdout}{done.stderr}"
    return out / "report.html"


def _drawn(png: bytes) -> tuple[int, float, int]:
    """What a screenshot shows: its number of colours, the share of pixels that are not near white, and
    how many saturated colours cover at least 200 pixels (bars, not text or anti-aliasing)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 24) or []
    grey = image.convert("L").histogram()
    inked = sum(grey[:240]) / (image.width * image.height)
    fills = sum(1 for n, rgb in colours if n >= 200 and max(rgb) - min(rgb) > 60)
    return len(colours), inked, fills


def test_comparison_report_renders_its_tables_and_plots(new_page: Callable[[], Page], tmp_path: Path) -> None:
    report = _compare_report(tmp_path / "eval")
    page = new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.goto(report.as_uri(), wait_until="load")

    assert page.title() == "Evaluation: patterns"
    # One summary row per compared team, both fully passing.
    for team in COMPARE:
        row = page.locator("tr", has=page.locator("td", has_text=team)).first
        assert "100% (2/2)" in row.inner_text()
    records = [json.loads(line) for line in (report.parent / "results.jsonl").read_text().splitlines()]
    scenarios = page.locator("h2:text-is('Scenarios') + table")
    assert scenarios.locator("td.pass").count() == len(records) == 4
    assert page.locator("h2", has_text="Failures").count() == 0

    plots = page.locator(".plots img")
    assert [plots.nth(i).get_attribute("alt") for i in range(plots.count())] == list(PLOTS)
    for i, caption in enumerate(PLOTS):
        img = plots.nth(i)
        img.scroll_into_view_if_needed()
        width, height = evaluate(img, "el => [el.complete ? el.naturalWidth : 0, el.naturalHeight]")
        assert width > 0 and height > 0, f"{caption}: the image did not decode"
        assert img.bounding_box()["width"] > 100, f"{caption}: the image is not shown at a readable size"
        colours, inked, fills = _drawn(img.screenshot())
        assert colours > 8 and inked > 0.02, (
            f"{caption}: the plot looks blank ({colours} colours, {inked:.1%} ink)"
        )
        assert fills >= 2, f"{caption}: two teams compared, but the bars are not in two colours ({fills})"

    folder = Path(os.environ.get("PARLEY_UI_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "report.png"), full_page=True)
    assert problems == []
