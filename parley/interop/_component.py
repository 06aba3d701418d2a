"""Reading an AutoGen component config as data: the file's limits, and a walker that knows each part's JSON path.

Nothing here imports AutoGen or runs anything the file names: a `provider` is only compared with known names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ..errors import ConfigError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "Findings", "Part", "quote", "read_json"]

MAX_BYTES = 5_000_000
"""An AutoGen team config is a few kilobytes; a bigger file is not one."""
MAX_DEPTH = 64
"""How deeply the file may nest; a team with And/Or conditions several levels deep stays far below."""
ALIASES = {
    "azure_openai_chat_completion_client": "AzureOpenAIChatCompletionClient",
    "openai_chat_completion_client": "OpenAIChatCompletionClient",
}
"""AutoGen's short provider names (its WELL_KNOWN_PROVIDERS), by the class they stand for."""
PACKAGES = ("autogen_agentchat", "autogen_core", "autogen_ext")


def quote(value: object, limit: int = 60) -> str:
    """A name taken from the file, safe to print: quoted, cut, and with control and bidi characters escaped."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text)


def read_json(path: Path) -> dict[str, Any]:
    """The component config in `path`, parsed, or a ConfigError that says why it cannot be one."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ConfigError(f"{path}: not a file: give the JSON file AutoGen wrote (team.dump_component())")
        if size > MAX_BYTES:
            raise ConfigError(
                f"{path}: {size:,} bytes is too big for an AutoGen team config (a few kilobytes; parley reads "
                f"at most {MAX_BYTES:,}): check that this is the file `team.dump_component()` wrote"
            )
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): save the JSON as UTF-8") from None
    except RecursionError:
        raise ConfigError(_too_deep(path)) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if _depth(data) > MAX_DEPTH:
        raise ConfigError(_too_deep(path))
    if isinstance(data, dict) and "provider" not in data and isinstance(data.get("component"), dict):
        data = cast(dict[str, Any], data)["component"]  # AutoGen Studio keeps the component under "component"
    if not isinstance(data, dict) or "provider" not in data:
        raise ConfigError(
            f"{path}: not an AutoGen component (no top-level `provider`): export the team with "
            "`team.dump_component().model_dump_json()` or AutoGen Studio's JSON download"
        )
    return cast(dict[str, Any], data)


def _no_constant(name: str) -> object:
    raise json.JSONDecodeError(f"{name} is not a number JSON allows", name, 0)


def _too_deep(path: Path) -> str:
    return (
        f"{path}: nested more than {MAX_DEPTH} levels deep, far more than any team config: check that this is the "
        "file `team.dump_component()` wrote"
    )


def _depth(data: object) -> int:
    """How deeply `data` nests, walked without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        if isinstance(value, dict):
            stack += [(v, level + 1) for v in cast(dict[str, Any], value).values()]
        elif isinstance(value, list):
            stack += [(v, level + 1) for v in cast(list[Any], value)]
    return deepest


@dataclass
class Findings:
    """What an import or export found: parts with no equivalent (the whole operation stops) and parts dropped."""

    problems: list[str] = field(default_factory=list[str])
    """`PATH: what has no equivalent — what to do`; any of them and nothing is written."""
    notes: list[str] = field(default_factory=list[str])
    """What was left out or approximated, and why: said to the user, and written into the team file as comments."""

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where or '(top)'}: {text}")

    def note(self, text: str) -> None:
        self.notes.append(" ".join(text.split()))


@dataclass(frozen=True)
class Part:
    """One component of the file (`{"provider": …, "config": {…}}`) and its JSON path."""

    data: dict[str, Any]
    path: str

    @staticmethod
    def of(value: object, path: str) -> Part | None:
        if isinstance(value, dict) and isinstance(cast(dict[str, Any], value).get("provider"), str):
            return Part(cast(dict[str, Any], value), path)
        return None

    @property
    def provider(self) -> str:
        return str(self.data.get("provider", ""))

    @property
    def kind(self) -> str:
        """The class a known provider names (`RoundRobinGroupChat`), or the provider as written."""
        provider = self.provider
        if provider in ALIASES:
            return ALIASES[provider]
        package, _, name = provider.rpartition(".")
        if package.split(".")[0] in PACKAGES or (not package and name):
            return name
        return provider

    @property
    def config(self) -> dict[str, Any]:
        value = self.data.get("config")
        return cast(dict[str, Any], value) if isinstance(value, dict) else {}

    def at(self, key: str) -> str:
        """The JSON path of a key of this part's config."""
        return f"{self.path}.config.{key}" if self.path else f"config.{key}"

    def child(self, key: str) -> Part | None:
        return Part.of(self.config.get(key), self.at(key))

    def children(self, key: str) -> list[tuple[str, object]]:
        """The items of a list in the config, each with its path (a single object counts as a list of one)."""
        value = self.config.get(key)
        if isinstance(value, list):
            return [(f"{self.at(key)}[{i}]", v) for i, v in enumerate(cast(list[Any], value))]
        return [] if value is None else [(self.at(key), value)]
