"""Tools run inside their conversation: its workspace, its shared notes, and the files they write shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _support import team_yaml

from parley import Conversation, ToolRegistry
from parley.events import FileEvent, ToolResultEvent

Write = Callable[[str, str], Path]


def _read(path: str) -> str:
    return Path(path).read_text()


async def test_tools_see_the_workspace_and_written_files_become_events(write: Write, tmp_path: Path) -> None:
    write(
        "mine/files.py",
        '''
        from parley.tools import current_context, tool

        @tool
        def save_report(text: str) -> str:
            """Save a report (sync tool: runs in a thread, still sees its run context)."""
            ctx = current_context()
            (ctx.workspace / "out").mkdir(exist_ok=True)
            (ctx.workspace / "out" / "report.md").write_text(text)
            ctx.notes.append({"role": ctx.role, "text": "report saved"})
            return f"saved by {ctx.role}"
    ''',
    )
    registry = ToolRegistry.discover([tmp_path / "mine"])
    team = write("team.yaml", team_yaml(roles=("alpha",), max_turns=1, tools={"alpha": ["save_report"]}))
    script = write("s.yaml", "roles:\n  alpha:\n    - tool: save_report\n      args: {text: '# Q3'}\n")
    conv = Conversation(team, model=f"scripted:{script}", registry=registry)
    events = [ev async for ev in conv.start("Write it down")]
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.content == "saved by alpha" and not result.is_error
    files = [e for e in events if isinstance(e, FileEvent)]
    assert [(f.name, f.mime, f.source, f.tool) for f in files] == [
        ("out/report.md", "text/markdown", "alpha", "save_report")
    ]
    assert _read(files[0].path) == "# Q3"
    assert Path(files[0].path).is_relative_to(conv.workspace)
    assert conv.notes_board == [{"role": "alpha", "text": "report saved"}]


USER_TOOLS = '''
from parley.tools import Cancellation, ToolDef, check, tool


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool(approval=True, family="bank")
async def pay(to: str, amount: float) -> str:
    """Pay someone."""
    return f"paid {amount} to {to}"


@tool
def slow(query: str, cancellation_token: Cancellation | None = None) -> str:
    """Run a long query, giving up when the run stops."""
    stopped = cancellation_token is not None and cancellation_token.is_cancelled()
    return "stopped" if stopped else query


@check
def short(text: str) -> str | None:
    """At most 100 characters."""
    return None if len(text) <= 100 else "too long"


total: int = add(1, 2)
label: str = add.name + pay.family
typed: ToolDef[[int, int], int] = add
verdict: str | None = short("ok")
'''

MISUSE = '''
from parley.tools import tool


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


wrong: str = add("one", 2)
'''


def test_a_tool_module_type_checks_and_a_wrong_call_of_a_tool_does_not(tmp_path: Path) -> None:
    """`@tool` keeps the function's types: pyright accepts a typical tool module and flags a wrong call."""
    import shutil
    import subprocess
    import sys

    pyright = shutil.which("pyright") or shutil.which("pyright", path=str(Path(sys.executable).parent))
    if pyright is None:
        pytest.skip("pyright is not installed (it is in the dev extra)")
    (tmp_path / "user_tools.py").write_text(USER_TOOLS)
    (tmp_path / "misuse.py").write_text(MISUSE)

    def check(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [pyright, "--pythonpath", sys.executable, name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    good = check("user_tools.py")
    assert good.returncode == 0 and "0 errors" in good.stdout, good.stdout + good.stderr
    bad = check("misuse.py")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert 'parameter "a"' in bad.stdout and 'declared type "str"' in bad.stdout, bad.stdout


def test_a_note_added_through_the_run_context_is_reported_to_the_conversation(tmp_path: Path) -> None:
    """A tool adds a shared note through its run context; the conversation hears of it (to record it) at once."""
    from parley.tools import MAX_NOTE, RunContext

    heard: list[dict[str, object]] = []
    board: list[dict[str, object]] = []
    ctx = RunContext(workspace=tmp_path, role="alpha", notes=board, on_note=heard.append)
    note = ctx.add_note("  Q3 revenue is 1.2M  ")
    assert board == heard == [note] and (note["role"], note["text"]) == ("alpha", "Q3 revenue is 1.2M")
    assert len(ctx.add_note("x" * (MAX_NOTE + 50))["text"]) == MAX_NOTE
    with pytest.raises(ValueError):
        ctx.add_note("   ")
    assert len(board) == 2


async def test_a_note_a_tool_adds_is_an_event_of_the_run(write: Write, tmp_path: Path) -> None:
    """A note added through the run context reaches the stream as a NoteEvent (and the board): nobody has to read
    the notes back out of a tool's arguments."""
    from parley.events import NoteEvent

    write(
        "mine/remember.py",
        '''
        from parley.tools import current_context, tool

        @tool
        def remember(fact: str) -> str:
            """Keep a fact on the team's shared notes."""
            current_context().add_note(fact)
            return "kept"
    ''',
    )
    registry = ToolRegistry.discover([tmp_path / "mine"])
    team = write("team.yaml", team_yaml(roles=("alpha",), max_turns=1, tools={"alpha": ["remember"]}))
    script = write("s.yaml", "roles:\n  alpha:\n    - tool: remember\n      args: {fact: 'EMEA leads Q3'}\n")
    conv = Conversation(team, model=f"scripted:{script}", registry=registry)
    events = [ev async for ev in conv.start("Note it")]
    notes = [e for e in events if isinstance(e, NoteEvent)]
    assert [(n.source, n.content) for n in notes] == [("alpha", "EMEA leads Q3")]
    assert [(n["role"], n["text"]) for n in conv.notes_board] == [("alpha", "EMEA leads Q3")]
