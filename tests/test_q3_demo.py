"""The seed's example end to end: Q3 sales data to a real slide deck, with the scripted model."""

from __future__ import annotations

from pathlib import Path

from pptx import Presentation

from parley import Conversation
from parley.events import FileEvent, MessageEvent, RunResult, ToolResultEvent

ROOT = Path(__file__).resolve().parent.parent


def _deck_text(path: str) -> tuple[str, int]:
    deck = Presentation(path)
    text = " ".join(
        shape.text_frame.text for slide in deck.slides for shape in slide.shapes if shape.has_text_frame
    )
    pictures = sum(1 for slide in deck.slides for shape in slide.shapes if shape.shape_type == 13)
    return text, pictures


async def test_q3_sales_to_presentation() -> None:
    conv = Conversation("q3-sales-review", model=f"scripted:{ROOT / 'evals/scripts/q3-sales.yaml'}")
    events = [ev async for ev in conv.start("Prepare the Q3 sales review")]
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "stop_text", result.detail
    tools = {e.name: e for e in events if isinstance(e, ToolResultEvent)}
    assert not any(e.is_error for e in tools.values())
    assert "| EMEA | 85383.28 |" in tools["sql_query"].content  # the figures come from the database
    assert "| EMEA | 85,383.28 | 43.0% |" in tools["compute_stats"].content
    files = {e.name: e for e in events if isinstance(e, FileEvent)}
    assert set(files) == {"charts/q3_revenue.png", "decks/q3-review.pptx"}
    assert files["charts/q3_revenue.png"].mime == "image/png"
    text, pictures = _deck_text(files["decks/q3-review.pptx"].path)
    assert "EMEA leads Q3 with 43.0% of revenue" in text and "North America: 62,202 (31.3%)" in text
    assert pictures == 1
    said = [e.source for e in events if isinstance(e, MessageEvent) and e.kind == "text"]
    assert said[:2] == ["analyst", "risk_check"]  # the risk checker woke on the analyst's figures
