"""Finding teams: the project's `teams/`, every directory in `PARLEY_TEAMS`, and `--teams DIR`.

Team files are code: a stdio MCP server's `command:` starts a program. Such a team runs only from a
trusted folder: those three, or one named in `PARLEY_TRUSTED_TEAMS` (colon-separated).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._yaml import did_you_mean
from .errors import ConfigError, UnknownTeamError
from .paths import inside, roots, search_dirs
from .spec import TeamSpec, load_team_file
from .tools import ToolRegistry, default_registry

__all__ = [
    "TRUSTED_TEAMS",
    "TeamEntry",
    "check_trusted",
    "current_teams",
    "discover_teams",
    "programs",
    "resolve_team",
    "team_dirs",
    "trusted_dirs",
]

TRUSTED_TEAMS = "PARLEY_TRUSTED_TEAMS"
"""Colon-separated folders whose team files may start programs, besides the folders teams are found in."""


@dataclass(frozen=True, kw_only=True)
class TeamEntry:
    """A team file found on disk: either a valid team or the error that breaks it."""

    name: str
    path: Path
    spec: TeamSpec | None = None
    error: str | None = None


def team_dirs(extra: Sequence[str | Path] = ()) -> list[Path]:
    return search_dirs("PARLEY_TEAMS", "teams", [str(p) for p in extra])


def trusted_dirs(extra: Sequence[str | Path] = ()) -> list[Path]:
    """Folders whose team files may start programs: the shipped `teams/`, `PARLEY_TEAMS`, `--teams DIR`
    and `PARLEY_TRUSTED_TEAMS`, all named by the operator."""
    named = [Path(p).expanduser() for p in os.environ.get(TRUSTED_TEAMS, "").split(os.pathsep) if p.strip()]
    return [*team_dirs(extra), *named]


def programs(spec: TeamSpec) -> list[str]:
    """The programs a team starts on this machine (its stdio MCP servers' commands), to show wherever it is listed."""
    return [m.command for m in spec.mcp if m.command is not None]


def check_trusted(spec: TeamSpec, extra: Sequence[str | Path] = ()) -> None:
    """Refuse a team file that would start a program (a stdio MCP server), or have the server connect to an address
    of its choosing (an MCP server by URL: another service on this machine or its network), from outside the trusted
    folders: a team file given by path, named by a suite or a sub-team, or planted in a workspace is not the
    operator's."""
    if (
        not spec.mcp or spec.source is None
    ):  # nothing to start or reach, or a team built in Python by the operator
        return
    source = spec.source.resolve()
    dirs = trusted_dirs(extra)
    for directory in dirs:
        try:
            inside(directory, source)
            return
        except ValueError:
            continue
    server = next((m for m in spec.mcp if m.command is not None), spec.mcp[0])
    from ._mcp_session import shown_url

    does = (
        f"would run `{server.command}`"
        if server.command is not None
        else f"would be reached at {shown_url(server.url or '')}"
    )
    raise ConfigError(
        f"{_display(spec.source)}: MCP server '{server.name}' {does}, but this team file is "
        f"not in a trusted team folder ({', '.join(str(d) for d in dirs)}). Team files are code: trust this one by "
        f"moving it into one of those folders, or by adding its folder to {TRUSTED_TEAMS} (or PARLEY_TEAMS, "
        "or --teams DIR)"
    )


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_entry(path: Path, registry: ToolRegistry) -> TeamEntry:
    try:
        spec = load_team_file(
            path, tool_names=registry.names(), check_names=sorted(registry.checks), display=_display(path)
        )
        return TeamEntry(name=spec.name, path=path, spec=spec)
    except ConfigError as exc:
        return TeamEntry(name=path.stem, path=path, error=str(exc))


def discover_teams(extra: Sequence[str | Path] = (), registry: ToolRegistry | None = None) -> list[TeamEntry]:
    """Every team file, valid or broken; one broken file never hides the others."""
    registry = registry or default_registry()
    entries: list[TeamEntry] = []
    by_name: dict[str, TeamEntry] = {}
    for directory in team_dirs(extra):
        if not directory.is_dir():
            entries.append(
                TeamEntry(name=directory.name, path=directory, error=f"{directory}: no such directory")
            )
            continue
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            entry = load_entry(path, registry)
            first = by_name.get(entry.name)
            if first is not None and entry.spec is not None:
                entry = TeamEntry(
                    name=entry.name,
                    path=path,
                    error=f"{_display(path)}: team name '{entry.name}' is already used by {_display(first.path)}",
                )
            by_name.setdefault(entry.name, entry)
            entries.append(entry)
    return entries


UNWATCHED_MAX_AGE_S = 30.0
"""How long parsed teams are kept while none of the files watched for them changes: a file read from elsewhere (a
sub-team by path) shows its edits within this time."""
_WATCHED_SUFFIXES = (".yaml", ".yml", ".md", ".txt")
_parsed: dict[tuple[str, ...], tuple[float, tuple[object, ...], ToolRegistry, list[TeamEntry]]] = {}
_parsing = threading.Lock()


def current_teams(extra: Sequence[str | Path] = ()) -> list[TeamEntry]:
    """`discover_teams(extra)`, parsed again only when a team or prompt file has changed since the last call, the
    tools were found again, or UNWATCHED_MAX_AGE_S has passed. For what asks on every page load or request: parsing
    every team file takes about 0.1 s, checking the folders for changes well under a millisecond."""
    key = tuple(str(p) for p in extra)
    mark = _watched(extra)
    registry = default_registry()
    with _parsing:  # a hundred pages opening at once share one parse
        kept = _parsed.get(key)
        if (
            kept is None
            or kept[1] != mark
            or kept[2] is not registry
            or time.monotonic() - kept[0] > UNWATCHED_MAX_AGE_S
        ):
            kept = _parsed[key] = (time.monotonic(), mark, registry, discover_teams(extra, registry))
    return list(kept[3])


def _watched(extra: Sequence[str | Path]) -> tuple[object, ...]:
    """The path, size and modification time of every file a team or its prompts can be read from: the team
    folders' and the prompt folders' files (with their subfolders'), and the project's and parley's own top-level
    prompt files."""
    tops = roots()
    deep = [*team_dirs(extra), *(root / "prompts" for root in tops)]
    marks: list[object] = []
    for folder, below in [*((f, True) for f in deep), *((root, False) for root in tops)]:
        for path in _files(folder, below):
            try:
                stat = path.stat()
            except OSError:
                marks.append((str(path), None))
                continue
            marks.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(marks)


def _files(folder: Path, below: bool) -> list[Path]:
    """The files a team may read in `folder` (and its subfolders, but hidden ones, when `below`)."""
    found: list[Path] = []
    try:
        with os.scandir(folder) as items:
            for item in items:
                if item.is_dir() and below and not item.name.startswith("."):
                    found += _files(Path(item.path), below)
                elif item.name.endswith(_WATCHED_SUFFIXES) and item.is_file():
                    found.append(Path(item.path))
    except OSError:
        return [folder]  # missing or unreadable: its coming back is a change too
    return found


def resolve_team(
    ref: str | Path, extra: Sequence[str | Path] = (), registry: ToolRegistry | None = None
) -> TeamSpec:
    """A team by name, or by path to a YAML file. Raises a ConfigError that says what exists."""
    registry = registry or default_registry()
    text = str(ref).strip()
    if not text:
        raise UnknownTeamError("no team given: name a team (`parley teams` lists them) or a YAML file")
    path = Path(text).expanduser()
    if text.endswith((".yaml", ".yml")) or path.is_file():
        return load_team_file(
            path, tool_names=registry.names(), check_names=sorted(registry.checks), display=text
        )
    # The default tools' teams as last parsed (parsed again only when a file changed): a worker resolves a team
    # for every conversation it takes, and parsing every team file costs about 0.1 s.
    entries = current_teams(extra) if registry is default_registry() else discover_teams(extra, registry)
    for entry in entries:
        if entry.name == text:
            if entry.spec is None:
                raise ConfigError(entry.error or f"team '{text}' is broken")
            return entry.spec
    names = sorted({e.name for e in entries if e.spec is not None})
    raise UnknownTeamError(
        f"unknown team '{text}'{did_you_mean(text, names)}; teams: {', '.join(names) or '(none found)'}"
    )
