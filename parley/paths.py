"""Where parley finds teams, tools and prompts, and where it keeps its data."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "project_root", "search_dirs"]


def project_root() -> Path:
    """The directory holding the shipped `teams/`, `tools/` and `prompts/`.

    `PARLEY_HOME` wins; otherwise the checkout this package lives in; otherwise the current directory.
    """
    env = os.environ.get("PARLEY_HOME")
    if env:
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "teams").is_dir():
        return checkout
    return Path.cwd()


def data_dir() -> Path:
    """Writable per-user data: the sample database, caches. `PARLEY_DATA_DIR` overrides."""
    env = os.environ.get("PARLEY_DATA_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base) / "parley"
    path.mkdir(parents=True, exist_ok=True)
    return path


def search_dirs(variable: str, default: Path, extra: list[str] | None = None) -> list[Path]:
    """`default`, then each directory in the colon-separated environment `variable`, then `extra`."""
    dirs = [default]
    dirs += [Path(p).expanduser() for p in os.environ.get(variable, "").split(os.pathsep) if p.strip()]
    dirs += [Path(p).expanduser() for p in (extra or [])]
    seen: set[Path] = set()
    out = []
    for d in dirs:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
