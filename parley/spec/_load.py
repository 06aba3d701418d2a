"""Loading a team file: parse it, check it, and read each role's prompt (from the file or a prompt file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast, get_args

from pydantic import BaseModel, ValidationError

from .._yaml import Located, did_you_mean, load_located, pydantic_problems
from ..errors import FileProblem, TeamFileError
from ..paths import inside, project_root, roots
from ._checks import cross_check
from ._models import SECTIONS, TeamSpec

__all__ = ["load_team_file"]

LOADER_KEYS = ("source", "prompts")
"""Fields the loader sets, which a team file may not."""


def _homes(model: type[BaseModel] = TeamSpec, where: str = "") -> dict[str, list[str]]:
    """Every key a team file may use, and where each belongs (`termination:`, `roles: → validate:`)."""
    found: dict[str, list[str]] = {}
    for name, field in model.model_fields.items():
        if field.exclude:
            continue  # set by the loader
        key = field.alias or name
        found.setdefault(key, []).append(where or "the top level")
        for inner in _sections_in(field.annotation):
            for sub, places in _homes(inner, f"{where} → {key}:" if where else f"{key}:").items():
                found.setdefault(sub, []).extend(p for p in places if p not in found[sub])
    return found


def _sections_in(annotation: Any) -> list[type[BaseModel]]:
    """The sections a field holds (a section, a list of them, or an optional one)."""
    if isinstance(annotation, type) and annotation in SECTIONS:
        return [annotation]
    return [s for arg in get_args(annotation) for s in _sections_in(arg)]


KEY_HOMES = {key: sorted(places, key=lambda p: (p != "the top level", p)) for key, places in _homes().items()}
"""Every key a team file may use anywhere, and where: "did you mean" on an unknown key, and where to put a key
given in the wrong place."""


def load_team_file(
    path: Path | str,
    *,
    tool_names: list[str] | None = None,
    display: str | None = None,
    check_names: list[str] | None = None,
) -> TeamSpec:
    """Load and check a team file. Raises TeamFileError listing every problem with its line."""
    path = Path(path)
    located = load_located(path, display)
    raw: object = located.data
    if not isinstance(raw, dict):
        raise TeamFileError(
            [located.problem((), "a team file must be a mapping (name:, pattern:, roles: ...)")]
        )
    given = cast(dict[str, Any], raw)
    if "provider" in given and "component_type" in given and "name" not in given:
        raise TeamFileError(
            [
                located.problem(
                    (),
                    "this is an AutoGen component config, not a parley team file: turn it into one with "
                    f"`parley import autogen {path}`",
                )
            ]
        )
    data = {k: v for k, v in given.items() if k not in LOADER_KEYS}
    problems = [located.problem((k,), f"unknown key '{k}'") for k in given if k in LOADER_KEYS]
    try:
        spec = TeamSpec.model_validate(data)
    except ValidationError as exc:
        raise TeamFileError(problems + pydantic_problems(located, exc, KEY_HOMES)) from None
    problems += cross_check(spec, located, tool_names)
    if check_names is not None:
        problems += _check_problems(spec, located, check_names)
    prompts, prompt_problems = _prompts(spec, located, path.parent)
    problems += prompt_problems
    if problems:
        raise TeamFileError(problems)
    return spec.model_copy(update={"source": path, "prompts": prompts})


def _check_problems(spec: TeamSpec, located: Located, check_names: list[str]) -> list[FileProblem]:
    """Validation checks (`validate: {check: NAME}`) that no `@check` in tools/ declares."""
    problems: list[FileProblem] = []
    for i, role in enumerate(spec.roles):
        name = role.validate_.check if role.validate_ else None
        if name is not None and name not in check_names:
            problems.append(
                located.problem(
                    ("roles", i, "validate", "check"),
                    f"unknown check '{name}'"
                    + did_you_mean(name, check_names)
                    + " (declare it with @check in tools/)",
                )
            )
    return problems


def _prompts(spec: TeamSpec, located: Located, team_dir: Path) -> tuple[dict[str, str], list[FileProblem]]:
    """Each role's prompt text (empty for a sub-team role), and the problems finding them."""
    prompts: dict[str, str] = {}
    problems: list[FileProblem] = []
    for i, role in enumerate(spec.roles):
        if role.team is not None:
            prompts[role.name] = ""
        elif not role.prompt.strip():
            problems.append(
                located.problem(
                    ("roles", i), f"role '{role.name}' needs a prompt (or `team:` for a sub-team)"
                )
            )
        elif (escape := _escaping_prompt(role.prompt, team_dir)) is not None:
            problems.append(located.problem(("roles", i, "prompt"), escape))
        elif (text := _resolve_prompt(role.prompt, team_dir)) is None:
            problems.append(located.problem(("roles", i, "prompt"), _missing_prompt(role.prompt, team_dir)))
        else:
            prompts[role.name] = text
    return prompts, problems


def _looks_like_file(value: str) -> bool:
    return "\n" not in value and value.strip().endswith((".md", ".txt"))


def _prompt_candidates(value: str, team_dir: Path) -> list[Path]:
    """Where a prompt file may be: next to the team file, in the project or in what parley ships, never outside
    them (a team file must not read any `.md` of the machine through `../` or an absolute path)."""
    rel = Path(value.strip())
    # The folder the team file belongs to first: a shipped team keeps its own prompts in a project with the same names.
    ordered = sorted(roots(), key=lambda root: not team_dir.resolve().is_relative_to(root.resolve()))
    allowed = [team_dir, *ordered]
    out: list[Path] = []
    for base in (team_dir, *(b for root in ordered for b in (root, root / "prompts"))):
        candidate = (base / rel).resolve()
        for folder in allowed:
            try:
                inside(folder, candidate)
            except ValueError:
                continue
            out.append(candidate)
            break
    return out


def _escaping_prompt(value: str, team_dir: Path) -> str | None:
    """Why a prompt path is refused (it leads outside the team file's folder and the project), or None."""
    if not _looks_like_file(value) or _prompt_candidates(value, team_dir):
        return None
    return (
        f"prompt file '{value.strip()}' is outside the team file's folder ({team_dir.resolve()}) and the project "
        f"({project_root()}): put the prompt next to the team file or under {project_root() / 'prompts'}"
    )


def _resolve_prompt(value: str, team_dir: Path) -> str | None:
    if not _looks_like_file(value):
        return value.strip()
    for candidate in _prompt_candidates(value, team_dir):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8").strip()
    return None


def _missing_prompt(value: str, team_dir: Path) -> str:
    return f"prompt file '{value}' not found (looked next to the team file and under {project_root() / 'prompts'})"
