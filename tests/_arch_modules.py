"""The architecture rules' model of the source: parley's modules parsed once, their imports, cycles and
layers, AutoGen imports, sizes and complexity. tests/test_architecture.py states the rules; tests/_arch_names.py
holds the private-name and monkeypatch checks."""

from __future__ import annotations

import ast
import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from radon.complexity import add_inner_blocks, cc_visit
from radon.visitors import Function

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "parley"
AUTOGEN_LAYER = PACKAGE / "engine" / "autogen"
ADAPTERS = (
    "parley",  # the package's own __init__: the public surface, importing the conversation
    "parley.cli",
    "parley._cli_run",
    "parley._cli_users",
    "parley._cli_eval",
    "parley._cli_share",
    "parley.web",
    "parley.evals",
    "parley._ui",
    "parley._terminal",
    "parley._audit",
    "parley._doctor",
    "parley._render",
    "parley._commands",
    "parley._cli_tokens",
    "parley._cli_worker",
    "parley.api",
    "parley.cluster",  # drives conversations for the other processes of a cluster, and shows theirs here
)
"""The modules (and packages) that adapt parley to a user: they may import anything of parley's."""
MAX_LINES = 500
MAX_COMPLEXITY = 15


@dataclass(frozen=True)
class Module:
    name: str
    """Dotted name, e.g. ``parley.store._rows``."""
    path: Path
    tree: ast.Module
    lines: int

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    line: int
    message: str
    name: str = field(default="", compare=False)
    """The private name used, for the private-name rule."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def load_module(path: Path, name: str) -> Module:
    text = path.read_text(encoding="utf-8")
    return Module(name, path, ast.parse(text, filename=str(path)), len(text.splitlines()))


@functools.cache
def parley_modules() -> dict[str, Module]:
    """Every module of the parley package, by dotted name."""
    found: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = load_module(path, ".".join(parts))
    return found


@functools.cache
def shipped_modules() -> tuple[Module, ...]:
    """parley's modules, the built-in tools and the web app's entry point: the code that ships."""
    extra = [p for p in sorted((ROOT / "tools").glob("*.py"))] + [ROOT / "app.py"]
    others = [
        load_module(p, p.relative_to(ROOT).with_suffix("").as_posix().replace("/", "."))
        for p in extra
        if p.exists()
    ]
    return (*parley_modules().values(), *others)


# ---------------------------------------------------------------- imports


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements run when the module is imported: not function bodies, not `if TYPE_CHECKING:`."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            if not is_type_checking(node.test):
                yield from module_level(node.body)
            yield from module_level(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from module_level(block)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from module_level(node.body)


def base_of(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved against `module`)."""
    if not node.level:
        return node.module or ""
    parts = module.name.split(".")
    package = parts if module.is_package else parts[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def imported_modules(module: Module, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute names of the modules an import statement loads (a `from` of a submodule loads it)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = base_of(module, node)
    known = parley_modules()
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
    return [base, *subs]


def _with_parents(target: str, importer: str) -> list[str]:
    """`target` and the packages Python runs first to reach it (those above the importer are running already)."""
    parts = target.split(".")
    chain = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return [name for name in chain if not importer.startswith(name + ".") and name != importer]


@functools.cache
def import_graph() -> dict[str, dict[str, int]]:
    """parley module -> {parley module it imports when loaded: line of the first such import}."""
    known = parley_modules()
    graph: dict[str, dict[str, int]] = {}
    for module in known.values():
        edges: dict[str, int] = {}
        for node in module_level(module.tree.body):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in imported_modules(module, node):
                    for name in _with_parents(target, module.name):
                        if name in known:
                            edges.setdefault(name, node.lineno)
        graph[module.name] = edges
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


def cycle_through(graph: dict[str, dict[str, int]], group: list[str]) -> list[str]:
    """One shortest cycle inside `group`, starting and ending at its first module."""
    start = group[0]
    members = set(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    return group


def cycle_findings() -> list[Finding]:
    graph = import_graph()
    known = parley_modules()
    found = []
    for group in strongly_connected(graph):
        cycle = cycle_through(graph, group)
        steps = [f"{known[a].rel}:{graph[a][b]} imports {b}" for a, b in itertools.pairwise(cycle)]
        found.append(
            Finding(
                known[cycle[0]].rel,
                graph[cycle[0]][cycle[1]],
                f"import cycle among {', '.join(group)}: " + "; ".join(steps) + ". Fix: make the dependency "
                "go one way (move what both need into a module that imports neither), or import the name "
                "under `if TYPE_CHECKING:` when it is only a type.",
            )
        )
    return found


def _layer(name: str) -> int:
    """3 for an adapter, 2 for the conversation, 1 for the run, 0 for everything they build on."""
    if any(name == a or (a != "parley" and name.startswith(a + ".")) for a in ADAPTERS):
        return 3
    return {"parley.conversation": 2, "parley.run": 1}.get(name, 0)


def _imports_outside_type_checking(module: Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every parley module an import statement names, anywhere in the module but under TYPE_CHECKING
    (a `from . import sub` names `sub`, not the package)."""
    hidden = {
        id(inner)
        for node in ast.walk(module.tree)
        if isinstance(node, ast.If) and is_type_checking(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    known = parley_modules()
    for node in ast.walk(module.tree):
        if id(node) in hidden or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        targets = imported_modules(module, node)
        if isinstance(node, ast.ImportFrom) and len(targets) == len(node.names) + 1:
            targets = targets[1:]  # every name is a submodule: the package itself is only the way there
        yield from ((node, t) for t in targets if t in known)


LAYER_NAMES = {
    0: "the engine and its building blocks",
    1: "the run",
    2: "the conversation",
    3: "the adapters",
}


def layer_findings() -> list[Finding]:
    return [f for module in parley_modules().values() for f in upward_imports(module)]


def upward_imports(module: Module) -> list[Finding]:
    names = LAYER_NAMES
    found = []
    own = _layer(module.name)
    for node, target in _imports_outside_type_checking(module):
        if _layer(target) > own:
            found.append(
                Finding(
                    module.rel,
                    node.lineno,
                    f"{module.name} ({names[own]}) imports {target} ({names[_layer(target)]}): dependencies go "
                    "adapters -> conversation -> run -> engine. Fix: pass what it needs in (a parameter, a "
                    "protocol the upper layer implements), or import the type under TYPE_CHECKING.",
                )
            )
    return found


def autogen_findings() -> list[Finding]:
    return [
        f for m in shipped_modules() if not m.path.is_relative_to(AUTOGEN_LAYER) for f in autogen_imports(m)
    ]


def autogen_imports(module: Module) -> list[Finding]:
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        found += [
            Finding(
                module.rel,
                node.lineno,
                f"imports {name}: only parley/engine/autogen/ may import AutoGen. Fix: move the code that "
                "needs it into that package behind a parley-owned function or type.",
            )
            for name in names
            if name.split(".")[0].startswith("autogen")
        ]
    return found


# ---------------------------------------------------------------- sizes


def size_findings() -> list[Finding]:
    return [
        Finding(
            m.rel,
            MAX_LINES + 1,
            f"{m.lines} lines (at most {MAX_LINES}). Fix: split it by responsibility into modules (or a package "
            "that re-exports the public names).",
        )
        for m in shipped_modules()
        if m.lines > MAX_LINES
    ]


def complexity_findings() -> list[Finding]:
    found = []
    for module in shipped_modules():
        for block in add_inner_blocks(cc_visit(module.path.read_text(encoding="utf-8"))):
            if isinstance(block, Function) and block.complexity > MAX_COMPLEXITY:
                found.append(
                    Finding(
                        module.rel,
                        block.lineno,
                        f"{block.fullname} has cyclomatic complexity {block.complexity} (at most "
                        f"{MAX_COMPLEXITY}). Fix: split it into functions that each decide one thing, or "
                        "replace branches by a table.",
                    )
                )
    return found
