"""YAML loading that remembers where each value came from, so errors can cite lines."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import FileProblem, TeamFileError

Loc = tuple[str | int, ...]


if TYPE_CHECKING:
    BaseLoader = yaml.SafeLoader
else:  # libyaml's parser where PyYAML has it
    BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(BaseLoader):
    """YAML 1.2 booleans: only true/false. `on:` (event-driven roles), `yes`, `no` and `off` stay text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class Located:
    """A parsed YAML document plus the line of every field path in it."""

    data: Any
    file: str
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        """Line of `loc`, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def problem(self, loc: Loc, message: str) -> FileProblem:
        return FileProblem(file=self.file, line=self.line(loc), path=format_loc(loc), message=message)


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[tuple[Loc, str]]) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                lines[(*loc, key)] = key_node.start_mark.line + 1
                problems.append(((*loc, key), f"duplicate key '{key}'"))
            seen.add(key)
            _walk(value_node, (*loc, key), lines, problems)
            lines[(*loc, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*loc, i), lines, problems)


MAX_BYTES = 1_000_000
"""Team, suite and script files are small; anything bigger is refused before parsing."""
MAX_NODES = 100_000
"""Values after expanding aliases: stops "billion laughs" documents before they expand."""
MAX_DEPTH = 64


def _too_big(node: yaml.Node) -> str | None:
    """Walk the node graph as the loader would expand it, giving up early on hostile shapes."""
    stack: list[tuple[yaml.Node, int]] = [(node, 1)]
    visited = 0
    while stack:
        current, depth = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            return f"the document expands to more than {MAX_NODES:,} values (aliases repeating aliases?)"
        if depth > MAX_DEPTH:
            return f"the document nests deeper than {MAX_DEPTH} levels"
        if isinstance(current, yaml.MappingNode):
            stack += [(n, depth + 1) for pair in current.value for n in pair]
        elif isinstance(current, yaml.SequenceNode):
            stack += [(n, depth + 1) for n in current.value]
    return None


def load_located(path: Path, display: str | None = None) -> Located:
    """Parse a YAML file. Raises TeamFileError with a line number on any syntax problem."""
    shown = display or str(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise TeamFileError(
                [
                    FileProblem(
                        file=shown,
                        line=None,
                        path="",
                        message=(
                            f"the file is {path.stat().st_size:,} bytes; files over {MAX_BYTES:,} bytes are refused"
                        ),
                    )
                ]
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TeamFileError([FileProblem(file=shown, line=None, path="", message="no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TeamFileError(
            [FileProblem(file=shown, line=None, path="", message=f"cannot read: {exc}")]
        ) from None
    return loads_located(text, shown)


def loads_located(text: str, shown: str) -> Located:
    try:
        if len(text) > MAX_BYTES:
            raise TeamFileError(
                [
                    FileProblem(
                        file=shown,
                        line=None,
                        path="",
                        message=(f"the text is {len(text):,} characters; over {MAX_BYTES:,} is refused"),
                    )
                ]
            )
        node = yaml.compose(text, Loader=_Loader)
        if node is None:
            raise TeamFileError([FileProblem(file=shown, line=1, path="", message="the file is empty")])
        hostile = _too_big(node)
        if hostile:
            raise TeamFileError([FileProblem(file=shown, line=None, path="", message=hostile)])
        loader = _Loader("")
        try:
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        msg = f"invalid YAML: {exc.problem or exc.context}"
        if "nesting depth" in msg:  # libyaml's own limit
            msg = f"the document nests too deeply (more than {MAX_DEPTH} levels are refused)"
        raise TeamFileError([FileProblem(file=shown, line=line, path="", message=msg)]) from None
    except yaml.YAMLError as exc:
        raise TeamFileError(
            [FileProblem(file=shown, line=None, path="", message=f"invalid YAML: {exc}")]
        ) from None
    except RecursionError:
        raise TeamFileError(
            [
                FileProblem(
                    file=shown,
                    line=None,
                    path="",
                    message=(f"the document nests too deeply (more than {MAX_DEPTH} levels are refused)"),
                )
            ]
        ) from None
    located = Located(data=data, file=shown)
    dupes: list[tuple[Loc, str]] = []
    _walk(node, (), located.lines, dupes)
    if dupes:
        raise TeamFileError([located.problem(loc, msg) for loc, msg in dupes])
    return located


def pydantic_problems(
    located: Located, exc: Any, known_keys: Sequence[str] | Mapping[str, Sequence[str]] = ()
) -> list[FileProblem]:
    """Turn a pydantic ValidationError into located problems; `known_keys` feed "did you mean" (a mapping also
    says where each key belongs, for a key put in the wrong place)."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            homes = known_keys.get(str(loc[-1])) if isinstance(known_keys, Mapping) else None
            if homes:
                msg = f"'{loc[-1]}' does not belong here: put it under {' or '.join(homes)}"
            else:
                msg = f"unknown key '{loc[-1]}'" + did_you_mean(str(loc[-1]), list(known_keys))
        elif err["type"] == "missing":
            msg = f"required field '{loc[-1]}' is missing"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        problems.append(located.problem(loc, msg))
    return problems


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
