"""Moving teams between parley and AutoGen: `parley import autogen FILE.json` and `parley export autogen TEAM`.

An AutoGen component config (`team.dump_component()`, or AutoGen Studio's JSON) is read as data, never as code:
nothing it names is imported or run. See docs/autogen.md for what maps and what does not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["add_export", "add_import", "run_export", "run_import"]


def add_import(sub: Any) -> None:
    """Add `parley import autogen` to the command's subparsers."""
    imp = sub.add_parser("import", help="turn another framework's team into a parley team file")
    imp_from = imp.add_subparsers(dest="framework", required=True)
    auto = imp_from.add_parser(
        "autogen", help="an AutoGen component JSON (team.dump_component(), AutoGen Studio) into a team file"
    )
    auto.add_argument(
        "file",
        metavar="FILE.json",
        help="what team.dump_component().model_dump_json() or AutoGen Studio wrote",
    )
    auto.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where the team file goes (default: teams/NAME.yaml; - prints it)",
    )
    auto.add_argument("--name", help="the team's name (default: the JSON's name, or the file's)")
    auto.add_argument("--model", help="every role's model, instead of the model clients in the JSON")
    auto.add_argument("--force", action="store_true", help="replace an existing team file")


def add_export(sub: Any) -> None:
    """Add `parley export autogen` to the command's subparsers."""
    exp = sub.add_parser("export", help="write a parley team in another framework's format")
    exp_to = exp.add_subparsers(dest="framework", required=True)
    auto = exp_to.add_parser("autogen", help="a team as an AutoGen component JSON (Team.load_component)")
    auto.add_argument("team", metavar="TEAM", help="a team name (see `parley teams`) or a YAML file")
    auto.add_argument("-o", "--output", metavar="FILE", help="write the JSON here (default: print it)")
    auto.add_argument("--model", help="every role's model, instead of the team's (which AutoGen must know)")
    auto.add_argument("--force", action="store_true", help="replace an existing file")
    auto.add_argument(
        "--teams", action="append", default=[], metavar="DIR", help="also look in DIR for teams"
    )


def _say(lines: list[str], what: str) -> None:
    if lines:
        print(f"parley: {what}:", file=sys.stderr)
        for line in lines:
            print(f"  - {line}", file=sys.stderr)


def run_import(args: argparse.Namespace) -> int:
    """`parley import autogen FILE`: the team file, written whole, or a ConfigError naming every part to change."""
    from ..models import parse_model
    from ..spec import load_team_file
    from ..tools import default_registry
    from ._component import read_json
    from ._files import team_yaml, write_new
    from ._import import import_team, team_name

    source = Path(args.file)
    data = read_json(source)
    config: Any = data.get("config")
    given = args.name or (config.get("name") if isinstance(config, dict) else None)
    name = team_name(given, source.stem)
    if args.model is not None:
        parse_model(args.model)
    registry = default_registry()
    imported = import_team(data, source=args.file, name=name, tool_names=registry.names(), model=args.model)
    header = [f"Imported from AutoGen by `parley import autogen {source.name}`."]
    header += [f"Differs from the AutoGen team: {note}" for note in imported.notes]
    text = team_yaml(imported.team, header)
    target = None if args.output == "-" else Path(args.output) if args.output else _default_target(name)

    def check(path: Path) -> None:
        shown = str(target or f"{name}.yaml")
        load_team_file(path, tool_names=registry.names(), check_names=sorted(registry.checks), display=shown)

    if target is None:
        with tempfile.TemporaryDirectory() as folder:
            write_new(Path(folder) / f"{name}.yaml", text, force=False, check=check)
        sys.stdout.write(text)
        _say(imported.notes, "what differs from the AutoGen team")
        return 0
    write_new(target, text, force=args.force, check=check)
    _say(imported.notes, "what differs from the AutoGen team")
    roles = ", ".join(r["name"] for r in imported.team["roles"])
    print(
        f"parley: wrote {target} (team {name}, {imported.team['pattern']}, roles {roles}); "
        f'`parley run {target} "TASK"` runs it',
        file=sys.stderr,
    )
    return 0


def _default_target(name: str) -> Path:
    """teams/NAME.yaml in the project (never inside an installed package), or ./NAME.yaml outside a project;
    refused when another team file already uses the name."""
    from ..catalog import discover_teams
    from ..errors import ConfigError
    from ..paths import is_project, project_root, shipped_root

    home = project_root()
    shipped = home.resolve() == shipped_root().resolve() and not is_project(Path.cwd())
    target = (Path.cwd() if shipped or not is_project(home) else home / "teams") / f"{name}.yaml"
    for entry in discover_teams():
        if entry.name == name and entry.path.resolve() != target.resolve():
            raise ConfigError(
                f"team name {name!r} is already used by {entry.path}: give another with --name NAME, or a path "
                "with -o"
            )
    return target


def run_export(args: argparse.Namespace) -> int:
    """`parley export autogen TEAM`: the AutoGen JSON, or a ConfigError naming what has no AutoGen equivalent."""
    from ..catalog import resolve_team
    from ..models import parse_model
    from ._export import export_team
    from ._files import write_new

    if args.model is not None:
        parse_model(args.model)
    spec = resolve_team(args.team, args.teams)
    component, notes = export_team(spec, model=args.model)
    text = json.dumps(component, indent=2, ensure_ascii=False) + "\n"
    if args.output and args.output != "-":
        write_new(Path(args.output), text, force=args.force)
        print(f"parley: wrote {args.output} (AutoGen {component['label']})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    _say(notes, "what the AutoGen team does not keep")
    return 0
