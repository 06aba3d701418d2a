"""Writing what an import or export made: a whole file or nothing, and never over an existing one unless asked."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["team_yaml", "write_new"]


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def team_yaml(team: dict[str, Any], header: list[str]) -> str:
    """The team file's text: comment lines first (one line each), then the team."""
    lines = [f"# {' '.join(line.split())}" for line in header]
    body = yaml.dump(team, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)
    return "\n".join(lines) + "\n" + body


def write_new(target: Path, text: str, *, force: bool, check: Callable[[Path], None] | None = None) -> None:
    """Write `text` to `target` whole: into a temporary file beside it, checked by `check`, then moved in place.
    Without `force` an existing file stays as it was, even one made while this ran."""
    if target.is_dir():
        raise ConfigError(f"{target} is a folder: give a file name, e.g. {target / 'NAME'}")
    if target.exists() and not force:
        raise ConfigError(f"{target} exists: pass --force to replace it, or -o to write elsewhere")
    folder = target.parent
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder: make it first, or give another path with -o")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if check is not None:
            check(Path(tmp))
        os.chmod(tmp, 0o644)  # a team file or config as any other, not a private one
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails if the name was taken meanwhile: nothing is overwritten
            except FileExistsError:
                raise ConfigError(f"{target} exists: pass --force to replace it") from None
            except (
                OSError
            ):  # a file system without hard links: claim the name, then move the whole file onto it
                target.open("x").close()
                os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _claim(tmp: Path, target: Path) -> None:
    """Give `tmp` the name `target` unless that name is taken (even meanwhile): nothing is overwritten."""
    try:
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: claim the name, then move the whole file onto it
            target.open("x").close()
            os.replace(tmp, target)
    except FileExistsError:
        raise ConfigError(f"{target} exists: pass --force to replace it") from None
