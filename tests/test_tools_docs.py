"""Knowledge-base search, workspace files and shared notes, through the registry as roles get them."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.tools import RunContext, ToolRegistry, use_context

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    (tmp_path / "ws").mkdir()
    return RunContext(workspace=tmp_path / "ws", role="writer")


def test_kb_search_finds_the_policy(reg: ToolRegistry) -> None:
    out = reg.get("kb_search").func("refund for a damaged monitor")
    assert "[refund-policy] Refund policy" in out and "30 days" in out
    assert "Nothing in the knowledge base" in reg.get("kb_search").func("zyzzyva")


def test_files_stay_inside_the_workspace(reg: ToolRegistry, ctx: RunContext, tmp_path: Path) -> None:
    write, read, ls = (reg.get(n).func for n in ("write_file", "read_file", "list_files"))
    (tmp_path / "secret.txt").write_text("do not read")
    (ctx.workspace / "link").symlink_to(tmp_path / "secret.txt")
    with use_context(ctx):
        assert write("drafts/post.md", "# Hello") == "Wrote drafts/post.md (7 bytes)."
        assert read("drafts/post.md") == "# Hello"
        assert "drafts/post.md (7 bytes)" in ls()
        for bad in ("../secret.txt", "/etc/passwd", "drafts/../../secret.txt", "link"):
            assert read(bad).startswith("Refused:"), bad
            assert write(bad, "x").startswith("Refused:"), bad
        assert (tmp_path / "secret.txt").read_text() == "do not read"
        assert "No file" in read("missing.md")


def test_team_notes_are_shared(reg: ToolRegistry, ctx: RunContext) -> None:
    notes = reg.get("team_notes").func
    with use_context(ctx):
        assert notes("read") == "No notes yet."
        assert notes("add", "EMEA grew 85% in Q3") == "Note 1 added."
    other = RunContext(workspace=ctx.workspace, role="analyst", notes=ctx.notes)
    with use_context(other):
        assert notes("read") == "1. [writer] EMEA grew 85% in Q3"


def test_a_context_tool_outside_a_conversation_says_so(reg: ToolRegistry) -> None:
    with pytest.raises(Exception, match="needs a running parley conversation"):
        reg.get("team_notes").func("read")
