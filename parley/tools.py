"""The tool registry: typed Python functions, registered by name, granted to roles.

A tool module (in the project's `tools/`, in a directory named by `PARLEY_TOOLS`, or an
installed package exposing the `parley.tools` entry point) declares tools with `@tool`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from .errors import ConfigError
from .paths import inside, search_dirs

__all__ = [
    "MAX_NOTE",
    "Cancellation",
    "CheckDef",
    "RunContext",
    "ToolDef",
    "ToolRegistry",
    "check",
    "current_context",
    "default_registry",
    "forget_default_registry",
    "load_helper",
    "output_file",
    "tool",
    "use_context",
    "write_atomically",
]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_DECLARED: list[ToolDef[..., Any] | CheckDef] = []
_LOCK = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class ToolDef(Generic[P, R]):
    """A registered tool: what `@tool` makes of a function. Calling it calls the function (tests and scripts may)."""

    name: str
    """Unique name the team file grants and the model calls."""
    family: str
    """Group shown by `parley tools` (the module's name by default)."""
    description: str
    """What the model is told the tool does (the docstring by default)."""
    func: Callable[P, R]
    approval: bool = False
    """Whether a human must approve each call."""
    source: str = ""
    """Where the tool was declared."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)


@overload
def tool(func: Callable[P, R]) -> ToolDef[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    family: str | None = None,
    approval: bool = False,
    description: str | None = None,
) -> Callable[[Callable[P, R]], ToolDef[P, R]]: ...


def tool(
    func: Callable[P, R] | None = None,
    *,
    name: str | None = None,
    family: str | None = None,
    approval: bool = False,
    description: str | None = None,
) -> ToolDef[P, R] | Callable[[Callable[P, R]], ToolDef[P, R]]:
    """Declare a tool. Use bare (`@tool`) or with options (`@tool(approval=True)`).

    The decorated name is the tool's `ToolDef`, typed by the function: calling it calls the function."""

    def register(f: Callable[P, R]) -> ToolDef[P, R]:
        fname = getattr(f, "__name__", "tool")
        doc = description or inspect.getdoc(f) or ""
        if not doc:
            raise ConfigError(f"tool {fname!r} in {f.__module__} needs a docstring: the model reads it")
        source = inspect.getsourcefile(f) or f.__module__
        made = ToolDef(
            name=name or fname,
            family=family or Path(source).stem,
            description=doc,
            func=f,
            approval=approval,
            source=source,
        )
        _DECLARED.append(made)
        return made

    return register(func) if func is not None else register


@dataclass(frozen=True, kw_only=True)
class CheckDef:
    """A named validation check that team files can require of a role's answers (`validate: {check: NAME}`)."""

    name: str
    description: str
    func: Callable[[str], bool | str | None]
    """Takes the answer; returns None or True when it passes, False or a problem (str) when not."""
    source: str = ""

    def problem(self, text: str) -> str | None:
        """What is wrong with `text`, or None. A check that raises fails with its error."""
        try:
            verdict = self.func(text)
        except Exception as exc:
            return f"check {self.name} failed: {type(exc).__name__}: {exc}"
        if verdict is None or verdict is True:
            return None
        if isinstance(verdict, str) and verdict:
            return verdict
        return f"check {self.name} failed: {self.description.splitlines()[0] if self.description else 'no reason given'}"


@overload
def check(func: F) -> F: ...


@overload
def check(*, name: str | None = None) -> Callable[[F], F]: ...


def check(func: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Declare a validation check: `f(answer: str) -> None | True` to pass, `False | "what is wrong"` to fail.
    The decorated function stays the function."""

    def register(f: F) -> F:
        _DECLARED.append(
            CheckDef(
                name=name or f.__name__,
                description=inspect.getdoc(f) or "",
                func=f,
                source=inspect.getsourcefile(f) or f.__module__,
            )
        )
        return f

    return register(func) if func is not None else register


@dataclass
class ToolRegistry:
    """Every tool and check parley can grant, and the modules that failed to load."""

    tools: dict[str, ToolDef[..., Any]] = field(default_factory=dict[str, ToolDef[..., Any]])
    errors: list[str] = field(default_factory=list[str])
    checks: dict[str, CheckDef] = field(default_factory=dict[str, CheckDef])

    def names(self) -> list[str]:
        return sorted(self.tools)

    def get(self, name: str) -> ToolDef[..., Any]:
        return self.tools[name]

    def add(self, tools: Iterable[ToolDef[..., Any] | CheckDef]) -> None:
        for t in tools:
            if isinstance(t, CheckDef):
                self.checks.setdefault(t.name, t)
                continue
            other = self.tools.get(t.name)
            if other is not None and other.func is not t.func:
                self.errors.append(f"{t.source}: tool name {t.name!r} is already taken by {other.source}")
                continue
            self.tools[t.name] = t

    @classmethod
    def discover(
        cls, dirs: Iterable[Path] | None = None, *, entry_point_group: str = "parley.tools"
    ) -> ToolRegistry:
        """Load tool modules from `dirs` (default: project `tools/` plus `PARLEY_TOOLS`) and entry points."""
        reg = cls()
        for directory in dirs if dirs is not None else search_dirs("PARLEY_TOOLS", "tools"):
            for path in sorted(Path(directory).glob("*.py")):
                if not path.name.startswith("_"):
                    reg.add(_collect(lambda p=path: _import_file(p), str(path), reg.errors))
        for ep in entry_points(group=entry_point_group):
            reg.add(_collect(ep.load, f"entry point {ep.name}", reg.errors))
        return reg


def _collect(load: Callable[[], Any], where: str, errors: list[str]) -> list[ToolDef[..., Any] | CheckDef]:
    with _LOCK:
        start = len(_DECLARED)
        try:
            load()
        except Exception as exc:
            errors.append(f"{where}: {type(exc).__name__}: {exc}")
            del _DECLARED[start:]
            return []
        found = _DECLARED[start:]
        del _DECLARED[start:]
    return found


def _import_file(path: Path) -> None:
    digest = hashlib.sha1(str(path.resolve().parent).encode()).hexdigest()[:8]
    modname = f"parley_tools_{digest}_{path.stem}"
    if modname in sys.modules:
        # Re-registering an already imported module: replay its declarations.
        _DECLARED.extend(getattr(sys.modules[modname], "__parley_tools__", []))
        return
    start = len(_DECLARED)
    module = _exec_module(path, modname)
    module.__parley_tools__ = list(_DECLARED[start:])  # type: ignore[attr-defined]


def _exec_module(path: Path, modname: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[modname]
        raise
    return module


def load_helper(tool_file: str, name: str) -> ModuleType:
    """Import a helper module (`_name.py`) next to a tool module, once per process.

    Tool modules are imported by file path, not as a package, so `from . import x` does not work.
    """
    path = Path(tool_file).resolve().with_name(f"{name}.py")
    digest = hashlib.sha1(str(path.parent).encode()).hexdigest()[:8]
    modname = f"parley_tools_{digest}_{name}"
    if modname in sys.modules:
        return sys.modules[modname]
    return _exec_module(path, modname)


class Cancellation(Protocol):
    """What a tool gets for a parameter named `cancellation_token`: the run's stop, to give up early on (a long
    query, a subprocess). parley passes it by name and never shows it to the model."""

    def is_cancelled(self) -> bool:
        """Whether the run has been stopped."""
        ...

    def add_callback(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the run is stopped (at once if it already is)."""
        ...


MAX_NOTE = 2000
"""Characters of one shared note."""


@dataclass
class RunContext:
    """What a tool can reach while a conversation runs it."""

    workspace: Path
    """The conversation's own folder; file tools must stay inside it."""
    role: str
    """The role calling the tool."""
    notes: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    """Notes shared by every role of the conversation (team_notes): read them here, add with `add_note`."""
    conversation_id: str = ""
    data_dir: Path | None = None
    """Where tools keep data they change (the sample database); None: parley's data folder, which every
    conversation shares. An evaluation gives each scenario run a folder of its own, so that every run, and every
    repeat, starts from the same data."""
    on_note: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False, compare=False)
    """Called with each note `add_note` adds: the conversation records it (an event), so nobody has to read it
    back out of a tool's arguments."""

    def add_note(self, text: str) -> dict[str, Any]:
        """Add a note to the shared board as this role (stripped, cut to MAX_NOTE characters); returns the note
        (`role`, `text`, `ts`). Empty text is a ValueError."""
        text = text.strip()
        if not text:
            raise ValueError("a note needs text")
        note: dict[str, Any] = {"role": self.role, "text": text[:MAX_NOTE], "ts": time.time()}
        self.notes.append(note)
        if self.on_note is not None:
            self.on_note(note)
        return note


_CURRENT: ContextVar[RunContext | None] = ContextVar("parley_run_context", default=None)


def current_context() -> RunContext:
    """The run context of the tool call in progress."""
    ctx = _CURRENT.get()
    if ctx is None:
        raise ConfigError(
            "this tool needs a running parley conversation (or `use_context(...)` in a script or test)"
        )
    return ctx


@contextlib.contextmanager
def use_context(ctx: RunContext) -> Generator[RunContext, None, None]:
    """Run tools outside a conversation (scripts, tests) with the given context."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def output_file(filename: str, folder: str, suffix: str, example: str) -> tuple[Path, str]:
    """Where a tool's output file named `filename` goes: `<workspace>/<folder>/<filename>`.

    Returns (absolute path, path relative to the workspace), or raises ValueError saying why the
    name may not be used (folders in it, a wrong suffix, a hidden file).
    """
    name = filename.strip()
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise ValueError(
            f"{filename!r} is not a plain file name: give one like {example!r} (no folders); "
            f"these files are always saved under {folder}/."
        )
    if not name.lower().endswith(suffix) or len(name) <= len(suffix) or name.startswith("."):
        raise ValueError(f"{filename!r} must be a file name ending in {suffix}, like {example!r}.")
    root = current_context().workspace.resolve()
    target_dir = root / folder
    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        target = inside(root, folder, name)
    except ValueError:
        raise ValueError(f"{folder}/{name} points outside the workspace.") from None
    if target.parent != target_dir.resolve():
        raise ValueError(f"{folder}/{name} points outside the workspace.")
    return target, f"{folder}/{name}"


def write_atomically(target: Path, data: bytes) -> None:
    """Write next to `target`, then rename: nobody ever sees a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_default: ToolRegistry | None = None


def default_registry() -> ToolRegistry:
    """The registry from the default locations, loaded once per process."""
    global _default
    if _default is None:
        _default = ToolRegistry.discover()
    return _default


def forget_default_registry() -> None:
    """Forget the default registry: the next `default_registry()` discovers the tools again (after `PARLEY_TOOLS`
    or the project's tools changed)."""
    global _default
    _default = None
