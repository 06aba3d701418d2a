"""Slide decks: a real PowerPoint (.pptx) file in the conversation's workspace, with charts as pictures."""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from parley.paths import inside
from parley.tools import current_context, output_file, tool, write_atomically

DECK_DIR = "decks"
MAX_SLIDES = 40
MAX_BULLETS = 10
PICTURE_TYPES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
# A 16:9 page, in inches.
PAGE_W, PAGE_H = 13.333, 7.5
MARGIN = 0.5
TITLE_TOP, TITLE_H = 0.35, 1.1
BODY_TOP = TITLE_TOP + TITLE_H + 0.15
_lock = threading.Lock()


class Slide(BaseModel):
    """One content slide: a headline, bullet points, an optional chart picture and speaker notes."""

    headline: str = Field(
        description="The slide's title: the point it makes, e.g. 'EMEA leads Q3 with 43.0%'"
    )
    bullets: list[str] = Field(
        default_factory=list,
        description="Short bullet points with the figures, e.g. ['EMEA: 85,383.28 (43.0%)']; "
        "indent a bullet with two spaces to make it a sub-point",
    )
    chart: str | None = Field(
        default=None,
        description="Optional image in the workspace to show on the slide, e.g. 'charts/q3_revenue.png' "
        "from make_chart",
    )
    notes: str = Field(default="", description="Optional speaker notes")


_SLIDES = TypeAdapter(list[Slide])


def _deck_target(filename: str) -> tuple[Path, str]:
    return output_file(filename, DECK_DIR, ".pptx", "q3_review.pptx")


def _picture(number: int, slide: Slide) -> Path | None:
    """The chart file of slide `number` inside the workspace, or ValueError saying what is wrong."""
    if slide.chart is None or not slide.chart.strip():
        return None
    where = f"slide {number} ({slide.headline!r})"
    chart = slide.chart.strip()
    root = current_context().workspace.resolve()
    if Path(chart).is_absolute():
        raise ValueError(
            f"{where}: chart {chart!r} is an absolute path; use a workspace path like 'charts/q3.png'."
        )
    try:
        path = inside(root, chart)
    except ValueError:
        raise ValueError(
            f"{where}: chart {chart!r} leaves the workspace; use a path like 'charts/q3.png'."
        ) from None
    if not path.is_file():
        raise ValueError(
            f"{where}: chart {chart!r} does not exist in the workspace. Create it with make_chart "
            "first, or call list_files to see what is there."
        )
    if path.suffix.lower() not in PICTURE_TYPES:
        raise ValueError(f"{where}: chart {chart!r} is not a picture ({', '.join(PICTURE_TYPES)}).")
    return path


def _place(shape: Any, left: float, top: float, width: float, height: float) -> None:
    from pptx.util import Inches

    shape.left, shape.top, shape.width, shape.height = (
        Inches(left),
        Inches(top),
        Inches(width),
        Inches(height),
    )


def _drop(shape: Any) -> None:
    element = shape.element
    element.getparent().remove(element)


_MARKER = re.compile(r"^(\s*)(?:[-*•–]\s+)?")


def _fill_bullets(frame: Any, bullets: list[str], size: int) -> None:
    from pptx.util import Pt

    for i, text in enumerate(bullets):
        indent = _MARKER.match(text)
        level = 1 if indent and len(indent[1].expandtabs(4)) >= 2 else 0
        para = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
        para.text = text[indent.end() if indent else 0 :].strip()
        para.level = level
        para.font.size = Pt(size - 4 * level)


def _fit_picture(slide: Any, path: Path, left: float, top: float, width: float, height: float) -> None:
    """Add the picture as large as fits the box, keeping its proportions, centred in the box."""
    from pptx.util import Inches

    pic = slide.shapes.add_picture(str(path), Inches(left), Inches(top), width=Inches(width))
    if pic.height > Inches(height):
        pic.width = int(pic.width * Inches(height) / pic.height)
        pic.height = Inches(height)
    pic.left = Inches(left) + (Inches(width) - pic.width) // 2
    pic.top = Inches(top) + (Inches(height) - pic.height) // 2


def _content_slide(page: Any, spec: Slide, picture: Path | None) -> None:
    """One content slide: its headline, its bullets (beside the chart when there is one), its notes."""
    from pptx.util import Pt

    width = PAGE_W - 2 * MARGIN
    body_h = PAGE_H - BODY_TOP - MARGIN
    page.shapes.title.text = spec.headline.strip()
    _place(page.shapes.title, MARGIN, TITLE_TOP, width, TITLE_H)
    page.shapes.title.text_frame.paragraphs[0].font.size = Pt(32)
    body = page.placeholders[1]
    bullets = [b for b in spec.bullets if b.strip()]
    if bullets:
        size = 24 if len(bullets) <= 5 else 20 if len(bullets) <= 8 else 16
        text_w = width * 0.42 if picture else width
        _place(body, MARGIN, BODY_TOP, text_w, body_h)
        _fill_bullets(body.text_frame, bullets, size - (2 if picture else 0))
    else:
        _drop(body)
    if picture and bullets:
        _fit_picture(page, picture, MARGIN + width * 0.44, BODY_TOP, width * 0.56, body_h)
    elif picture:
        _fit_picture(page, picture, MARGIN, BODY_TOP, width, body_h)
    if spec.notes.strip():
        page.notes_slide.notes_text_frame.text = spec.notes.strip()


def _build(title: str, slides: list[Slide], pictures: list[Path | None]) -> bytes:
    from pptx import Presentation
    from pptx.util import Inches, Pt

    prs = Presentation()
    prs.slide_width, prs.slide_height = Inches(PAGE_W), Inches(PAGE_H)
    prs.core_properties.title = title
    prs.core_properties.author = "parley"
    prs.core_properties.last_modified_by = "parley"
    width = PAGE_W - 2 * MARGIN

    cover = prs.slides.add_slide(prs.slide_layouts[0])
    heading: Any = cover.shapes.title  # the Title Slide layout always has one
    heading.text = title
    _place(heading, MARGIN, 2.3, width, 1.6)
    heading.text_frame.paragraphs[0].font.size = Pt(40)
    _drop(cover.placeholders[1])  # the empty subtitle box

    for spec, picture in zip(slides, pictures, strict=True):
        _content_slide(prs.slides.add_slide(prs.slide_layouts[1]), spec, picture)  # Title and Content
    out = io.BytesIO()
    prs.save(out)
    return out.getvalue()


@tool(family="documents")
def make_slides(
    title: Annotated[str, "The deck's title, shown on its title slide, e.g. 'Q3 2025 sales review'"],
    slides: Annotated[list[Slide], "The content slides, in order: each a headline, bullets, optional chart"],
    filename: Annotated[
        str, "A plain file name ending in .pptx (no folders), e.g. 'q3_review.pptx'"
    ] = "deck.pptx",
) -> str:
    """Make a PowerPoint deck (.pptx) in this conversation's workspace, under decks/: a title slide, then
    one slide per entry with its headline, bullet points and, if given, a chart picture beside them
    (use a path returned by make_chart, like 'charts/q3_revenue.png'), plus optional speaker notes.

    Put the actual figures in the bullets (e.g. 'EMEA: 85,383.28, 43.0% of revenue'). Returns the
    saved path and an outline of the deck. Saving under an existing name replaces that deck.
    """
    if not title.strip():
        return "Error: give the deck a title."
    specs = _validated(slides)
    if isinstance(specs, str):
        return specs
    try:
        pictures = [_picture(number, spec) for number, spec in enumerate(specs, 2)]
        target, shown = _deck_target(filename)
    except ValueError as exc:
        return f"Refused: {exc}"
    try:
        with _lock:
            data = _build(title.strip(), specs, pictures)
    except Exception as exc:  # an unreadable image, mostly
        return f"Error: the deck could not be built ({type(exc).__name__}: {exc})."
    write_atomically(target, data)
    outline = _outline(title.strip(), specs, pictures)
    return f"Deck saved as {shown} ({len(specs) + 1} slides, {len(data):,} bytes):\n" + "\n".join(outline)


def _validated(slides: list[Slide]) -> list[Slide] | str:
    """The slides, checked; or what is wrong with them (an Error or a Refused message)."""
    try:
        specs = _SLIDES.validate_python(slides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "slides" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        return f"Error: the slides are malformed: {where}: {first['msg']}. Each slide is {{headline, bullets, chart, notes}}."
    if not specs:
        return "Error: give at least one slide (a headline with bullets and/or a chart)."
    if len(specs) > MAX_SLIDES:
        return f"Refused: {len(specs)} slides is more than a deck here may have ({MAX_SLIDES})."
    for number, spec in enumerate(specs, 2):
        if not spec.headline.strip():
            return f"Error: slide {number} has no headline."
        if len([b for b in spec.bullets if b.strip()]) > MAX_BULLETS:
            return (
                f"Refused: slide {number} ({spec.headline!r}) has more than {MAX_BULLETS} bullets; split it."
            )
    return specs


def _outline(title: str, specs: list[Slide], pictures: list[Path | None]) -> list[str]:
    """One line per slide: its headline and what it holds."""
    outline = [f"1. {title} (title slide)"]
    workspace = current_context().workspace.resolve()
    for number, (spec, picture) in enumerate(zip(specs, pictures, strict=True), 2):
        count = len([b for b in spec.bullets if b.strip()])
        parts = [f"{count} bullet{'' if count == 1 else 's'}"]
        if picture:
            parts.append(f"chart {picture.relative_to(workspace)}")
        if spec.notes.strip():
            parts.append("notes")
        outline.append(f"{number}. {spec.headline.strip()} ({', '.join(parts)})")
    return outline
