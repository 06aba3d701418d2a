"""Where parley finds teams, tools and prompts, and where it keeps its data."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path

__all__ = [
    "data_dir",
    "data_dir_path",
    "inside",
    "is_project",
    "is_server_id",
    "new_id",
    "private_file",
    "project_root",
    "roots",
    "search_dirs",
    "shipped_root",
]

_SERVER_ID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def new_id() -> str:
    """A fresh id of the server's own form (a random UUID) for anything that becomes a path or a key."""
    return str(uuid.uuid4())


def is_server_id(value: object) -> bool:
    """True for an id of the form parley makes (a UUID, with or without dashes, lower-case hex)."""
    return isinstance(value, str) and len(value) <= 36 and _SERVER_ID.fullmatch(value) is not None


def inside(root: Path, *parts: str | Path) -> Path:
    """`root / parts...`, resolved, or ValueError if the result is not strictly inside `root`.

    Every place that turns a name it did not make itself into a path goes through here: `..`,
    absolute parts, and symbolic links that lead out of `root` are all refused.
    """
    base = root.resolve()
    for part in parts:
        text = str(part)
        if "\x00" in text:
            raise ValueError(f"{text!r} contains a NUL character")
    target = base.joinpath(*parts).resolve()
    if target == base or not target.is_relative_to(base):
        raise ValueError(f"{'/'.join(str(p) for p in parts)!r} is not inside {base}")
    return target


def private_file(path: Path) -> None:
    """Make a file of parley's data readable by its owner only, whatever the umask was."""
    with contextlib.suppress(OSError):  # a filesystem without modes, or not our file: nothing more to do
        path.chmod(0o600)


_PACKAGE = Path(__file__).resolve().parent
_SHIPPED = _PACKAGE / "_shipped"
"""Where an installed wheel keeps the shipped teams, tools, prompts, suites and web chat (see pyproject.toml)."""


def shipped_root() -> Path:
    """The directory holding what parley ships: `teams/`, `tools/`, `prompts/`, `evals/`, `app.py`, `.chainlit/`
    and `public/`. In a checkout that is the checkout; in an installed package, the package's own copy."""
    checkout = _PACKAGE.parent
    if (checkout / "teams").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout
    return _SHIPPED


def is_project(folder: Path) -> bool:
    """A parley project: a folder with a `teams/` folder (what `parley init` makes)."""
    return (folder / "teams").is_dir()


def project_root() -> Path:
    """The user's project: its `teams/`, `tools/` and `prompts/` come before the shipped ones.

    `PARLEY_HOME` wins; otherwise the current directory when it is a project (see `is_project`); otherwise the
    shipped folder (`shipped_root`), so the shipped teams work from anywhere.
    """
    env = os.environ.get("PARLEY_HOME")
    if env:
        return Path(env).expanduser().resolve()
    here = Path.cwd()
    if is_project(here):
        return here.resolve()
    return shipped_root()


def roots() -> list[Path]:
    """Where teams, tools, prompts and suites are looked for, in order: the project, then what parley ships."""
    project, shipped = project_root(), shipped_root()
    return [project] if project.resolve() == shipped.resolve() else [project, shipped]


def data_dir_path() -> Path:
    """The data folder's path, without making it (it may be what cannot be written). `PARLEY_DATA_DIR` overrides."""
    env = os.environ.get("PARLEY_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "parley"


def data_dir() -> Path:
    """Writable per-user data: the sample database, caches. `PARLEY_DATA_DIR` overrides."""
    path = data_dir_path()
    # The data folder holds the store, the sign-in secret and every conversation's files: its owner only.
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        if path.stat().st_mode & 0o077 and path.stat().st_uid == os.geteuid():
            path.chmod(0o700)  # made before parley kept it private, or by a permissive umask
    except OSError:
        pass
    return path


def search_dirs(variable: str, folder: str, extra: list[str] | None = None) -> list[Path]:
    """The project's `folder`, then each directory in the colon-separated environment `variable`, then `extra`,
    then the shipped `folder` (each once)."""
    project, *shipped = (root / folder for root in roots())
    dirs = [project]
    dirs += [Path(p).expanduser() for p in os.environ.get(variable, "").split(os.pathsep) if p.strip()]
    dirs += [Path(p).expanduser() for p in (extra or [])]
    dirs += shipped
    seen: set[Path] = set()
    out: list[Path] = []
    for d in dirs:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
