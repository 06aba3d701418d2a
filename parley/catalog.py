"""Finding teams: the project's `teams/`, every directory in `PARLEY_TEAMS`, and `--teams DIR`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._yaml import did_you_mean
from .errors import ConfigError, UnknownTeamError
from .paths import project_root, search_dirs
from .spec import TeamSpec, load_team_file
from .tools import ToolRegistry, default_registry

__all__ = ["TeamEntry", "discover_teams", "resolve_team", "team_dirs"]


@dataclass(frozen=True, kw_only=True)
class TeamEntry:
    """A team file found on disk: either a valid team or the error that breaks it."""

    name: str
    path: Path
    spec: TeamSpec | None = None
    error: str | None = None


def team_dirs(extra: Sequence[str | Path] = ()) -> list[Path]:
    return search_dirs("PARLEY_TEAMS", project_root() / "teams", [str(p) for p in extra])


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_entry(path: Path, registry: ToolRegistry) -> TeamEntry:
    try:
        spec = load_team_file(path, tool_names=registry.names(), check_names=sorted(registry.checks), display=_display(path))
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
            entries.append(TeamEntry(name=directory.name, path=directory, error=f"{directory}: no such directory"))
            continue
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            entry = load_entry(path, registry)
            first = by_name.get(entry.name)
            if first is not None and entry.spec is not None:
                entry = TeamEntry(name=entry.name, path=path,
                                  error=f"{_display(path)}: team name '{entry.name}' is already used by {_display(first.path)}")
            by_name.setdefault(entry.name, entry)
            entries.append(entry)
    return entries


def resolve_team(ref: str | Path, extra: Sequence[str | Path] = (), registry: ToolRegistry | None = None) -> TeamSpec:
    """A team by name, or by path to a YAML file. Raises a ConfigError that says what exists."""
    registry = registry or default_registry()
    text = str(ref).strip()
    if not text:
        raise UnknownTeamError("no team given: name a team (`parley teams` lists them) or a YAML file")
    path = Path(text).expanduser()
    if text.endswith((".yaml", ".yml")) or path.is_file():
        return load_team_file(path, tool_names=registry.names(), check_names=sorted(registry.checks), display=text)
    entries = discover_teams(extra, registry)
    for entry in entries:
        if entry.name == text:
            if entry.spec is None:
                raise ConfigError(entry.error or f"team '{text}' is broken")
            return entry.spec
    names = sorted({e.name for e in entries if e.spec is not None})
    raise UnknownTeamError(
        f"unknown team '{text}'{did_you_mean(text, names)}; teams: {', '.join(names) or '(none found)'}"
    )
