"""`parley init DIR`: a new parley project with a team, its prompts, a tool, a check and an evaluation suite.

Run from the project's folder, parley finds its teams, tools and prompts before the shipped ones (parley/paths.py),
and the shipped teams stay available by name."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

__all__ = ["FILES", "scaffold"]

_TEAM = """\
# A round-robin team: the researcher looks things up, the writer drafts, the reviewer approves or asks for changes.
# Try it:  parley run my-team "Write a short note on our refund policy"
name: my-team
description: A researcher, a writer and a reviewer take turns until the reviewer approves
pattern: round_robin
roles:
  - name: researcher
    description: Gathers the facts the task needs, with the word_count tool where it helps
    prompt: prompts/researcher.md
    tools: [word_count]
  - name: writer
    description: Writes the answer from the researcher's facts
    prompt: prompts/writer.md
    validate: {check: no_placeholders, retries: 1}   # tools/example.py
  - name: reviewer
    description: Approves the draft with APPROVE, or says what to change
    prompt: prompts/reviewer.md
termination:
  stop_text: APPROVE
  stop_from: [reviewer]
  max_turns: 9
  max_tokens: 40000
  timeout_s: 600
starters:
  - Write a short note on our refund policy
"""

_PROMPTS = {
    "researcher.md": (
        "You are the team's researcher. List the facts the task needs as short bullet points, and say what you\n"
        "could not find out. Do not write the final text.\n"
    ),
    "writer.md": (
        "You are the team's writer. Write the answer from the researcher's facts: plain words, short sentences,\n"
        "no placeholders. When the reviewer asks for changes, make them and give the whole text again.\n"
    ),
    "reviewer.md": (
        "You are the team's reviewer. If the writer's text is accurate and complete, reply with a one-line\n"
        "reason followed by APPROVE. Otherwise say exactly what to change.\n"
    ),
}

_TOOL = '''\
"""This project's own tools and checks. Any `*.py` here (not starting with `_`) is loaded by parley."""

from __future__ import annotations

import re
from typing import Annotated

from parley.tools import check, tool


@tool
def word_count(text: Annotated[str, "the text to count"]) -> int:
    """Count the words of a text."""
    return len(text.split())


@check
def no_placeholders(text: str) -> str | None:
    """An answer must not leave placeholders such as [NAME] or TODO for someone else to fill in."""
    found = re.search(r"\\[[A-Z _]+\\]|\\bTODO\\b|\\bTBD\\b", text)
    return f"the answer still has a placeholder ({found.group(0)}); fill it in" if found else None
'''

_SUITE = """\
# An evaluation suite: each scenario runs a team on a task and checks what happened.
#   parley eval evals/smoke.yaml
# The scripted model (scripts/*.yaml) makes the run the same every time; drop `model:` to use your own model.
suite: smoke
description: my-team, deterministic
scenarios:
  - name: note-approved-on-first-review
    team: my-team
    task: "Write a short note on our refund policy"
    model: scripted:scripts/note.yaml
    expect:
      - speaker_order: [researcher, writer, reviewer]
      - tool_called: {name: word_count}
      - final_contains: "APPROVE"
      - stop_reason: stop_text
      - max_turns: 4
"""

_SCRIPT = """\
# What each role of my-team says, in order, in the smoke suite.
roles:
  researcher:
    - tool: word_count
      args: {text: "Refunds within 30 days of delivery, to the card used."}
  writer:
    - "Refunds: you can ask for one within 30 days of delivery, and the money goes back to the card you paid with."
  reviewer:
    - "Accurate and complete. APPROVE"
"""

_README = """\
# {name}

A parley project: its teams, prompts, tools and evaluation suites. Run parley from this folder and it finds them
before the teams parley ships (those stay available by name).

| Folder | What it holds |
|---|---|
| `teams/` | team files (`my-team.yaml`): roles, their prompts and tools, the pattern, when to stop |
| `prompts/` | each role's instructions |
| `tools/` | Python tools (`@tool`) and answer checks (`@check`) the teams may use |
| `evals/` | evaluation suites and the scripts of their scripted runs |

    parley teams                                  # every team: this project's and the shipped ones
    parley run my-team "Write a short note on our refund policy"
    parley eval evals/smoke.yaml                  # runs the suite, writes a report
    parley ui                                     # the web chat, with this project's teams

The embedded default model is tiny: it writes weak text and cannot call tools. Use a real model for real work
(`--model openai:gpt-4o-mini`, `--model ollama:llama3.1`, or any OpenAI-compatible server with `--model compatible:...`).
"""

FILES: dict[str, str] = {
    "teams/my-team.yaml": _TEAM,
    **{f"prompts/{name}": text for name, text in _PROMPTS.items()},
    "tools/example.py": _TOOL,
    "evals/smoke.yaml": _SUITE,
    "evals/scripts/note.yaml": _SCRIPT,
}
"""Every file `parley init` writes (besides README.md), by its path in the project."""


def scaffold(folder: Path) -> list[Path]:
    """Write a new project into `folder` (made if missing); the files written. Nothing is written, and nothing
    already there is touched, when any of the files exists."""
    folder = folder.expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file: give `parley init` a folder (new or empty)")
    files = {**FILES, "README.md": _README.format(name=folder.resolve().name)}
    taken = [path for path in files if (folder / path).exists()]
    if taken:
        raise ConfigError(
            f"{folder} already has {', '.join(taken)}: parley init never overwrites files; "
            "pick a new folder or move them away"
        )
    written = []
    for path, text in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "x", encoding="utf-8") as f:  # "x": never overwrite, even if one appeared meanwhile
            f.write(text)
        written.append(target)
    return written


def describe(folder: Path, written: list[Path]) -> str:
    """What `parley init` says once the files are written."""
    shown = os.path.relpath(folder) if not folder.is_absolute() else str(folder)
    lines = [f"parley: a new project in {shown}:"]
    lines += [f"  {p.relative_to(folder)}" for p in written]
    lines += [
        "next:",
        f"  cd {shown}",
        "  parley teams",
        '  parley run my-team "Write a short note on our refund policy"',
    ]
    return "\n".join(lines)
