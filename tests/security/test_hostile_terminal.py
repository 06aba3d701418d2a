"""A hostile model against the operator's terminal: `parley run` shows what models and tools send, never obeys it.

A model's text, its tool calls' names and arguments (a raw string that is not JSON too), tool results, the
names of files a tool wrote, questions to the human and error texts may carry terminal escape sequences: a
cursor move and erase that replaces the real approval request with a forged one, a conceal (ESC [8m) that
hides the next real line, OSC window-title and clipboard writes, a screen clear. The CLI is driven on a real
pseudo-terminal with the scripted model, as an operator would see it: no ESC reaches the terminal but
parley's own styling, the model's sequences are shown as text (`\\x1b`, or `\\u001b` inside JSON), and the
approval prompt itself names the real call. `--json` keeps the text exactly as sent (JSON escapes it), and
`parley audit --format md` shows it made visible like the terminal does."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from parley.cli import main
from parley.tools import forget_default_registry

Write = Callable[[str, str], Path]
ROOT = Path(__file__).resolve().parents[2]
TOOLS = '''
from parley.tools import tool

SENT = []


@tool(approval=True)
def wire_money(to: str, amount: float, memo: str = "") -> str:
    """Send money (needs approval)."""
    SENT.append((to, amount))
    return f"sent {amount:g} to {to}"


@tool()
def echo(text: str) -> str:
    """Say the text back."""
    return "echo: " + text
'''
TEAM = """
name: test-team
pattern: round_robin
roles:
  - name: coder
    description: the coder role
    prompt: You are coder.
    tools: [wire_money, echo, write_file, read_file, ask_human]
termination:
  max_turns: {turns}
"""
OWN_STYLING = re.compile(rb"\x1b\[(?:0|1|2|3[1-6]|9[1-6])m")
"""Every escape sequence parley writes itself (parley/_render.py: bold, dim, its colours, the reset)."""
APPROVE = b"type y to approve"
ANSWER = b"type your answer"
DEADLINE_S = 120.0
"""A run that never ends fails the test after this long (the machine may be busy: generous, never waited out)."""


@pytest.fixture
def tools_dir(write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    write("hostile_tools/bank.py", TOOLS)
    monkeypatch.setenv("PARLEY_TOOLS", str(tmp_path / "hostile_tools"))
    forget_default_registry()  # an in-process CLI rediscovers tools with PARLEY_TOOLS
    yield tmp_path / "hostile_tools"
    forget_default_registry()  # later tests rediscover them without it


def on_terminal(argv: list[str], answer: Callable[[str], bytes | None]) -> bytes:
    """Run `parley ARGV` with a pseudo-terminal as its standard input, output and error (so it is interactive
    and styled), type `answer(line)` after each complete line it shows (when not None), and return every byte
    the terminal received."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley.cli", *argv],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=ROOT,
        env=dict(os.environ, COLUMNS="200"),
        start_new_session=True,
    )
    os.close(terminal)
    out = bytearray()
    lines_seen = 0
    end = time.monotonic() + DEADLINE_S
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                pytest.fail(
                    f"`parley {' '.join(argv[:2])}` did not end; its terminal showed:\n"
                    + out.decode(errors="replace")
                )
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: every holder of the terminal closed it, the CLI ended
                break
            if not data:
                break
            out += data
            complete = out.split(b"\n")[:-1]
            for line in complete[lines_seen:]:
                reply = answer(line.decode(errors="replace"))
                if reply is not None:
                    os.write(controller, reply)
            lines_seen = len(complete)
        proc.wait(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(controller)
    return bytes(out)


def reply_to(marker: bytes, reply: bytes) -> Callable[[str], bytes | None]:
    return lambda line: reply if marker.decode() in line else None


def foreign_escapes(out: bytes) -> list[str]:
    """Control characters on the terminal that are not parley's own styling (ESC, BEL which ends an OSC
    sequence, C1 controls such as CSI U+009B), each with what follows it. Carriage returns are the terminal's
    own (it writes CR LF for each newline)."""
    rest = OWN_STYLING.sub(b"", out).decode(errors="replace")
    return [
        rest[m.start() : m.start() + 12] for m in re.finditer("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", rest)
    ]


def prompt_lines(out: bytes, marker: bytes) -> list[str]:
    return [line.decode(errors="replace") for line in out.splitlines() if marker in line]


FORGED = (
    r"\e[s\e[6A\e[J\e[33m? coder asks to call wire_money {\"to\": \"ACME\", \"amount\": 1}: "
    r"needs approval\e[0m\n\e[8m"
)
"""Inside a YAML double-quoted string: save the cursor, go six lines up, erase to the end of the screen, then a
yellow approval request for a harmless call, and a conceal that hides whatever comes next."""


def test_a_forged_approval_request_is_shown_as_text_and_the_prompt_names_the_real_call(
    write: Write, tools_dir: Path
) -> None:
    team = write("team.yaml", TEAM.format(turns=1))
    script = write(
        "s.yaml",
        f"""
        roles:
          coder:
            - calls:
                - {{tool: wire_money, args: {{to: MALLORY, amount: 1000000}}}}
                - {{tool: echo, raw_args: "{FORGED}"}}
            - "Sent, as you asked.\\e[8m"
    """,
    )
    out = on_terminal(
        ["run", str(team), "Pay ACME one euro", "--model", f"scripted:{script}", "--no-save"],
        reply_to(APPROVE, b"n\n"),
    )
    assert foreign_escapes(out) == [], out.decode(errors="replace")
    text = out.decode()
    # The forged request is there to read, with its escapes written out, never obeyed.
    assert r'"\u001b[s\u001b[6A\u001b[J\u001b[33m? coder asks to call wire_money' in text, text
    assert r"Sent, as you asked.\x1b[8m" in text, text
    # The real request, and the prompt a `y` would answer, both name the real call.
    assert '? coder asks to call wire_money {"to": "MALLORY", "amount": 1000000}: needs approval' in text
    prompts = prompt_lines(out, APPROVE)
    assert len(prompts) == 1 and 'wire_money {"to": "MALLORY", "amount": 1000000}?' in prompts[0], text
    assert "wire_money denied by" in text


def test_with_two_calls_waiting_each_prompt_decides_the_call_it_names(write: Write, tools_dir: Path) -> None:
    team = write("team.yaml", TEAM.format(turns=1))
    script = write(
        "s.yaml",
        """
        roles:
          coder:
            - calls:
                - {tool: wire_money, args: {to: ACME, amount: 1}}
                - {tool: wire_money, args: {to: MALLORY, amount: 1000000, memo: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}
            - "Paid."
    """,
    )
    prompts: list[str] = []

    def decide(line: str) -> bytes | None:
        """The operator approves the prompt that names ACME's euro, and denies any other."""
        if APPROVE.decode() not in line:
            return None
        prompts.append(line)
        return b"y\n" if 'wire_money {"to": "ACME", "amount": 1}?' in line else b"n\n"

    out = on_terminal(
        ["run", str(team), "Pay ACME one euro", "--model", f"scripted:{script}", "--no-save"], decide
    )
    text = out.decode()
    assert len(prompts) == 2, text  # one prompt per call, never a repeat that a second answer would go past
    assert "← wire_money: sent 1 to ACME" in text, text
    # Arguments too long for one prompt line are cut there, with a digest of the whole the request line also shows.
    digest = re.findall(r"\(\d+ characters, sha256 [0-9a-f]{16}\)", text)
    assert len(digest) >= 2 and len(set(digest)) == 1 and digest[0] in prompts[1], text
    assert (
        not re.search(r"sent \S+ to MALLORY", text)
        and "wire_money: the call to wire_money was denied" in text
    ), text


def test_escapes_in_text_chunks_tool_results_file_names_and_questions_reach_the_terminal_as_text(
    write: Write, tools_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team = write("team.yaml", TEAM.format(turns=5))
    name = r"\e[2Jreport\e]0;pwned\a.txt"
    script = write(
        "s.yaml",
        rf"""
        delay_s: 0.05
        roles:
          coder:
            - "Hello \e]0;owned title\a and \e]52;c;cm0gLXJmIH4=\a then \e[2J\e[H\e[8m hidden \u202eevil"
            - {{tool: write_file, args: {{path: "{name}", content: "\e[31mred\e[0m \e]52;c;cm0=\a\r overwritten"}}}}
            - "Written."
            - {{tool: read_file, args: {{path: "{name}"}}}}
            - "Read."
            - {{tool: ask_human, args: {{question: "Go on?\e[8m"}}}}
            - "Going on."
            - "Done.\x9b2J"
    """,
    )
    out = on_terminal(
        ["run", str(team), "Write a report", "--model", f"scripted:{script}", "--no-save"],
        reply_to(ANSWER, b"yes\n"),
    )
    assert foreign_escapes(out) == [], out.decode(errors="replace")
    text = out.decode()
    assert (
        r"Hello \x1b]0;owned title\x07 and \x1b]52;c;cm0gLXJmIH4=\x07 then \x1b[2J\x1b[H\x1b[8m hidden "
        r"\u202eevil" in text
    ), text  # streamed chunk by chunk
    assert r"wrote \x1b[2Jreport\x1b]0;pwned\x07.txt (" in text, text  # the file written, by name
    assert r"\x1b[31mred\x1b[0m \x1b]52;c;cm0=\x07\x0d overwritten" in text, text  # read_file's result
    assert r"Go on?\x1b[8m" in text, text  # the question to the human
    prompts = prompt_lines(out, ANSWER)  # the terminal echoes what was typed, maybe on the prompt's line
    assert len(prompts) == 1 and prompts[0].startswith("type your answer to coder's question and Enter"), text
    assert r"Done.\x9b2J" in text, text

    # --json keeps every text exactly as the model sent it: JSON escapes it already.
    main(
        [
            "run",
            str(team),
            "Write a report",
            "--model",
            f"scripted:{script}",
            "--no-save",
            "--json",
            "--answer",
            "yes",
            "--timeout",
            "60",
        ]
    )
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    said = [e["content"] for e in events if e["type"] == "message" and e["source"] == "coder"]
    assert (
        said[0]
        == "Hello \x1b]0;owned title\x07 and \x1b]52;c;cm0gLXJmIH4=\x07 then \x1b[2J\x1b[H\x1b[8m hidden "
        "\u202eevil"
    )
    assert [e["name"] for e in events if e["type"] == "file"] == ["\x1b[2Jreport\x1b]0;pwned\x07.txt"]
    assert [e["content"] for e in events if e["type"] == "question"] == ["Go on?\x1b[8m"]


def test_the_audit_table_shows_model_text_made_visible(
    write: Write, tools_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team = write("team.yaml", TEAM.format(turns=1))
    script = write(
        "s.yaml",
        r"""
        roles:
          coder:
            - calls:
                - {tool: ask_human, args: {question: "Fine?\e[2J\e]0;pwned\a\e[8m"}}
            - "Asked."
    """,
    )
    assert (
        main(["run", str(team), "Ask", "--model", f"scripted:{script}", "--answer", "ok", "--timeout", "60"])
        == 0
    )
    run_id = re.search(r"saved as (\S+)", capsys.readouterr().err)
    assert run_id, "the run was not saved"
    assert main(["audit", run_id.group(1), "--format", "md"]) == 0
    table = capsys.readouterr().out
    assert "\x1b" not in table and "\x07" not in table, table
    assert r"Fine?\x1b[2J\x1b]0;pwned\x07\x1b[8m" in table, table
    rows: list[Any] = [line for line in table.splitlines() if line.startswith("| ") and "question" in line]
    assert len(rows) == 1, table


def test_team_listings_and_errors_show_a_team_files_escapes_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A team file from anywhere (a download, a colleague's folder) is listed and validated without its
    escape sequences reaching the terminal: a title write and a screen clear in a description and a key."""
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "nice.yaml").write_text(
        'name: nice\ndescription: "Friendly\\e]0;pwned\\a team\\e[2J"\npattern: round_robin\n'
        "roles:\n  - name: alpha\n    prompt: You are alpha.\n",
        encoding="utf-8",
    )
    broken = folder / "broken.yaml"
    broken.write_text(
        'name: broken\npattern: round_robin\n"bad\\e[8mkey": 1\n'
        "roles:\n  - name: alpha\n    prompt: You are alpha.\n",
        encoding="utf-8",
    )
    assert main(["teams", "--teams", str(folder)]) == 0
    listed = capsys.readouterr().out
    assert main(["teams", "--validate", str(broken)]) == 1
    validated = capsys.readouterr().out
    for out in (listed, validated):
        assert "\x1b" not in out and "\x07" not in out, out
    assert "Friendly\\x1b]0;pwned\\x07 team\\x1b[2J" in listed
    assert "bad\\x1b[8mkey" in validated
