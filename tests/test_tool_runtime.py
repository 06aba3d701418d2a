"""Tools run inside their conversation: its workspace, its shared notes, and the files they write shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from _support import team_yaml

from parley import Conversation, ToolRegistry
from parley.events import FileEvent, ToolResultEvent

Write = Callable[[str, str], Path]


def _read(path: str) -> str:
    return Path(path).read_text()


async def test_tools_see_the_workspace_and_written_files_become_events(write: Write, tmp_path: Path) -> None:
    write("mine/files.py", '''
        from parley.tools import current_context, tool

        @tool
        def save_report(text: str) -> str:
            """Save a report (sync tool: runs in a thread, still sees its run context)."""
            ctx = current_context()
            (ctx.workspace / "out").mkdir(exist_ok=True)
            (ctx.workspace / "out" / "report.md").write_text(text)
            ctx.notes.append({"role": ctx.role, "text": "report saved"})
            return f"saved by {ctx.role}"
    ''')
    registry = ToolRegistry.discover([tmp_path / "mine"])
    team = write("team.yaml", team_yaml(roles=("alpha",), max_turns=1, tools={"alpha": ["save_report"]}))
    script = write("s.yaml", "roles:\n  alpha:\n    - tool: save_report\n      args: {text: '# Q3'}\n")
    conv = Conversation(team, model=f"scripted:{script}", registry=registry)
    events = [ev async for ev in conv.start("Write it down")]
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.content == "saved by alpha" and not result.is_error
    files = [e for e in events if isinstance(e, FileEvent)]
    assert [(f.name, f.mime, f.source, f.tool) for f in files] == [("out/report.md", "text/markdown", "alpha", "save_report")]
    assert _read(files[0].path) == "# Q3"
    assert Path(files[0].path).is_relative_to(conv.workspace)
    assert conv.notes_board == [{"role": "alpha", "text": "report saved"}]
