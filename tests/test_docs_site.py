"""The documentation site builds in strict mode, every link a reader can follow resolves, and the pages that list
parley's commands and tools keep up with the code."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GENERATED = {"api-reference.md"}
"""Pages a build hook writes (docs/hooks/): in the nav, not on disk."""

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)


def _links(text: str) -> list[str]:
    """Relative link targets of a Markdown text (code blocks left out)."""
    text = _FENCE.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    found = [m.group(1) for m in _LINK.finditer(text)]
    return [t for t in found if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def _github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces as hyphens."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", _FENCE.sub("", markdown), re.M):
        text = re.sub(r"\s*\{#[^}]*\}$", "", heading)
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def _nav_paths(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_paths(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_paths(value)]
    return []


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="the site needs mkdocs-material (`make install` installs it with the dev extra)",
)
def test_the_site_builds_in_strict_mode_with_the_api_reference(tmp_path: Path) -> None:
    """`mkdocs build --strict` fails on a broken link or anchor, a page left out of the nav, or a warning."""
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    reference = (site / "api-reference" / "index.html").read_text(encoding="utf-8")
    assert "/api/v1/conversations/{conversation_id}/events" in reference
    assert "/v1/chat/completions" in reference
    assert (site / "images" / "controls-live-light.png").is_file()


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_paths(config["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in _pages()}
    assert sorted(pages - set(nav)) == [], "add these pages to the nav in mkdocs.yml"
    assert sorted(set(nav) - pages - GENERATED) == [], "these nav entries have no page under docs/"


def test_relative_links_in_the_docs_point_at_files() -> None:
    """What the strict build checks too, here without mkdocs: a link to a page or picture that is not there."""
    broken = []
    for page in _pages():
        for target in _links(page.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if path and path not in GENERATED and not (page.parent / path).resolve().exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            if not (page.parent / path).resolve().is_relative_to(DOCS):
                broken.append(f"{page.relative_to(ROOT)}: {target} leaves docs/ (the site cannot serve it)")
    assert broken == []


def test_links_from_the_readme_into_the_docs_resolve() -> None:
    """Every relative link and picture in README.md names a file, and a heading anchor names a heading there."""
    broken = []
    for target in _links((ROOT / "README.md").read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        file = ROOT / path
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif (
            anchor
            and file.suffix == ".md"
            and anchor not in _github_anchors(file.read_text(encoding="utf-8"))
        ):
            broken.append(f"{target}: no heading #{anchor} in {path}")
    assert broken == []


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Every command and subcommand (`users add`) under `parser`, with its options."""
    found: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                assert isinstance(sub, argparse.ArgumentParser)
                command = (*path, name)
                found[" ".join(command)] = [
                    o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"
                ]
                found |= _commands(sub, command)
    return found


def test_the_cli_page_covers_every_command_and_option() -> None:
    from parley.cli import _parser  # the CLI's own parser, as tests/test_deploy.py reads it

    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = _commands(_parser())
    assert "run" in commands and "users add" in commands
    missing = [c for c in commands if f"parley {c}" not in page]
    assert missing == [], f"docs/cli.md says nothing of: {missing}"
    unsaid = sorted(f"parley {c} {o}" for c, options in commands.items() for o in options if o not in page)
    assert unsaid == [], f"docs/cli.md does not mention these options: {unsaid}"


def test_the_configuration_page_names_every_variable_parley_reads() -> None:
    code = [*ROOT.joinpath("parley").rglob("*.py"), *ROOT.joinpath("tools").rglob("*.py"), ROOT / "app.py"]
    read = {
        v for p in code for v in re.findall(r"\bPARLEY_[A-Z][A-Z_]*[A-Z]\b", p.read_text(encoding="utf-8"))
    }
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert sorted(v for v in read if f"`{v}" not in page) == [], "add these to docs/configuration.md's table"


def test_the_tools_page_lists_every_tool_with_its_family_and_approval() -> None:
    from parley.tools import default_registry

    page = (DOCS / "tools.md").read_text(encoding="utf-8")
    registry = default_registry()
    wrong = []
    for name in registry.names():
        tool = registry.get(name)
        row = f"| `{name}` | {tool.family} | {'required' if tool.approval else '-'} |"
        if row not in page:
            wrong.append(row)
    assert wrong == [], f"docs/tools.md's table needs these rows (name, family, approval): {wrong}"


def test_no_table_cell_escapes_a_pipe_inside_code() -> None:
    """GitHub shows `a \\| b` in a table as a pipe, the site shows the backslash: write <code>a &#124; b</code>."""
    found = [
        f"{page.relative_to(ROOT)}:{number}"
        for page in _pages()
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if line.startswith("|") and re.search(r"`[^`]*\\\|[^`]*`", line)
    ]
    assert found == []
