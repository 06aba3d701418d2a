"""The web chat's face without a browser: Markdown that keeps model names whole, a colour of its own per speaker
of a team, the usage chart and the welcome panel (their browser side: tests/ui/test_face_browser.py)."""

from __future__ import annotations

from pathlib import Path

from parley.catalog import discover_teams
from parley.events import ErrorEvent, MessageEvent, NoticeEvent
from parley.web._art import PALETTE, assign_colours, colour, usage_chart_svg
from parley.web._format import agent_text, md_safe, note
from parley.web._welcome import CAPTIONS, diagram_svg, layout, model_in_use, welcome_markdown

NOTICE = "use a larger model (e.g. --model openai:gpt-4o-mini or ollama:qwen2.5) for tool use"
TEAMS = [e.spec for e in discover_teams() if e.spec is not None]


def test_model_names_are_not_read_as_markdown_directives() -> None:
    assert md_safe(NOTICE) == NOTICE.replace(":g", "\\:g").replace(":q", "\\:q")
    assert md_safe(md_safe(NOTICE)) == md_safe(NOTICE)  # escaping twice changes nothing
    shown = note(NoticeEvent(content=NOTICE))
    assert shown is not None and "openai\\:gpt-4o-mini" in shown[1] and "ollama\\:qwen2.5" in shown[1]
    error = note(ErrorEvent(source="data", error_type="X", content="model openai:gpt-4o failed"))
    assert error is not None and "openai\\:gpt-4o" in error[1]
    text = agent_text(MessageEvent(source="writer", content="Note:this", turn=2))
    assert text.endswith("Note\\:this")


def test_code_addresses_and_times_stay_as_written() -> None:
    for same in (
        "`openai:gpt-4o-mini`",
        "```yaml\nmodel: openai:gpt-4o\n```",
        "see https://example.com/a:b and <mailto:ann@example.com>",
        "at 10:30, a ratio of 3:1",
    ):
        assert md_safe(same) == same


def test_each_speaker_of_a_team_has_a_colour_of_its_own_in_order() -> None:
    for spec in TEAMS:  # every shipped team, in turn, as servers meet them
        given = assign_colours(spec.role_names)
        assert len(set(given.values())) == len(spec.role_names), spec.name
        assert all(colour(n) == given[n] for n in spec.role_names)
    fresh = ["zeta_one", "zeta_two", "zeta_three"]  # names no team used yet: the palette in order
    assert list(assign_colours(fresh).values()) == list(PALETTE[:3])
    # The colours once collided by hash: analyst and risk_check, forecaster and reporter, billing and technical.
    for pair in (["analyst", "risk_check"], ["forecaster", "reporter"], ["billing", "technical"]):
        assert len(set(assign_colours(pair).values())) == 2


def test_the_chart_is_sized_for_the_chat_and_has_no_box() -> None:
    svg = usage_chart_svg([("analyst", 1200, 300, 3), ("selector", 400, 10, 0)])
    assert 'width="640"' in svg and "viewBox" in svg
    assert "white" not in svg and "<rect width=" not in svg  # transparent: the chat's background shows
    assert "prefers-color-scheme: dark" in svg and "16px" in svg


def test_every_team_has_a_welcome_panel_with_its_diagram(tmp_path: Path) -> None:
    for spec in TEAMS:
        text = welcome_markdown(spec, tmp_path)
        picture = tmp_path / "welcome" / f"{spec.name}.svg"
        assert f"(/public/welcome/{spec.name}.svg)" in text and picture.read_text() == diagram_svg(spec)
        assert spec.description in text and "Interrupt" in text and "Stop" in text and "Model" in text
        plan = layout(spec)
        for role in [*plan.top, *plan.bottom]:
            assert f">{role}<" in picture.read_text() or role in plan.helpers or len(role) > 14
        assert CAPTIONS[spec.pattern].split(": ")[0] in picture.read_text()


def test_the_panel_names_the_model_in_use(monkeypatch, tmp_path: Path) -> None:
    spec = TEAMS[0]
    monkeypatch.setenv("PARLEY_MODEL", "scripted:/somewhere/tests/ui/scripts/studio.yaml")
    assert model_in_use(spec) == ["scripted:studio.yaml"]
    monkeypatch.delenv("PARLEY_MODEL")
    if spec.model is None and all(r.model is None for r in spec.roles):
        assert model_in_use(spec) == ["local"]
        assert "demo quality" in welcome_markdown(spec, tmp_path)
