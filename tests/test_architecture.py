"""The architecture's rules, checked on the source without running it.

- Dependencies go one way: no import cycle among parley's modules (module-level imports; those
  under `if TYPE_CHECKING:` or inside a function do not count).
- Layers: adapters (CLI, web, evaluations) -> `parley.conversation` -> `parley.run` -> the rest (engine,
  store, models, ...); no module imports one of a layer above its own (anywhere but under TYPE_CHECKING).
- AutoGen stays behind one layer: only `parley/engine/autogen/` imports `autogen_*`.
- No module uses another module's private names: no `from .x import _y`, no `module._y`, no
  `obj._y` (nor `getattr(obj, "_y")`) unless `_y` is defined in the same module, and no private
  name or private module of a third-party package.
- No monkeypatch (another module's or class's attribute replaced) outside the one module allowed for it.
- Every module is at most 500 lines, every function at most cyclomatic complexity 15 (radon).

Each failure names the file and line and says how to fix it.
"""

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
    "parley.web",
    "parley.evals",
    "parley._ui",
    "parley._terminal",
    "parley._audit",
    "parley._doctor",
    "parley._render",
)
"""The modules (and packages) that adapt parley to a user: they may import anything of parley's."""
MAX_LINES = 500
MAX_COMPLEXITY = 15

# Uses of another module's private names that are accepted, each with its reason:
# {("parley/some/file.py", "_name"): "why there is no public way, and which test fails if it changes"}.
CHAINLIT_COOKIE = (
    "Chainlit has no public way to name or expire its login cookie; parley/web/_chainlit_fixes.py is the one module "
    "isolating the web chat's Chainlit workarounds, and its check() (asserted empty by tests/security/"
    "test_hostile_client.py::test_chainlit_is_still_what_parley_patches) fails if Chainlit changes them."
)
AUTOGEN_INTERNALS = (
    "AutoGen offers no public way (a team's participants, its graph, its manager's state key, the one hook for a "
    "single tool call); parley/engine/autogen/internals.py is the one module using them, pinned by "
    "tests/test_autogen_internals.py, which fails naming what changed."
)
PRIVATE_ALLOWED: dict[tuple[str, str], str] = {
    ("parley/engine/autogen/internals.py", "_participants"): AUTOGEN_INTERNALS,
    ("parley/engine/autogen/internals.py", "_graph"): AUTOGEN_INTERNALS,
    ("parley/engine/autogen/internals.py", "_group_chat_manager_name"): AUTOGEN_INTERNALS,
    ("parley/engine/autogen/internals.py", "_execute_tool_call"): AUTOGEN_INTERNALS,
    ("parley/web/_chainlit_fixes.py", "_auth_cookie_name"): CHAINLIT_COOKIE,
    ("parley/web/_chainlit_fixes.py", "_cookie_path"): CHAINLIT_COOKIE,
    ("parley/web/_chainlit_fixes.py", "_cookie_secure"): CHAINLIT_COOKIE,
    ("parley/web/_chainlit_fixes.py", "_cookie_samesite"): CHAINLIT_COOKIE,
    ("parley/engine/autogen/models/limits.py", "_model_info"): (
        "autogen-ext's model tables (context window per model): public only through `remaining_tokens`, which "
        "downloads tiktoken's encoding on first use, and parley runs offline. Pinned by tests/"
        "test_model_capabilities.py::test_autogen_ext_still_finds_the_info_and_window_of_the_models_parley_relies_on."
    ),
}

# Modules allowed to replace attributes of another package's classes or modules, each with its reason.
MONKEYPATCH_ALLOWED: dict[str, str] = {
    "parley/web/_chainlit_fixes.py": CHAINLIT_COOKIE.replace(
        "to name or expire its login cookie", "for these fixes"
    ),
}

# Underscore names that are public API by convention: namedtuple's methods, enum's sunder names.
PUBLIC_BY_CONVENTION = {
    "_replace",
    "_asdict",
    "_fields",
    "_field_defaults",
    "_make",
    "_missing_",
    "_generate_next_value_",
    "_value_",
    "_name_",
    "_ignore_",
    "_order_",
}
# Documented standard-library functions whose names start with an underscore.
DOCUMENTED_PRIVATE = {("os", "_exit")}
ATTRIBUTE_CALLS = {"getattr", "setattr", "hasattr", "delattr"}


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


def _load(path: Path, name: str) -> Module:
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
        found[".".join(parts)] = _load(path, ".".join(parts))
    return found


@functools.cache
def shipped_modules() -> tuple[Module, ...]:
    """parley's modules, the built-in tools and the web app's entry point: the code that ships."""
    extra = [p for p in sorted((ROOT / "tools").glob("*.py"))] + [ROOT / "app.py"]
    others = [
        _load(p, p.relative_to(ROOT).with_suffix("").as_posix().replace("/", "."))
        for p in extra
        if p.exists()
    ]
    return (*parley_modules().values(), *others)


# ---------------------------------------------------------------- imports


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements run when the module is imported: not function bodies, not `if TYPE_CHECKING:`."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level(block)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _module_level(node.body)


def _base_of(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved against `module`)."""
    if not node.level:
        return node.module or ""
    parts = module.name.split(".")
    package = parts if module.is_package else parts[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def _imported(module: Module, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute names of the modules an import statement loads (a `from` of a submodule loads it)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = _base_of(module, node)
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
        for node in _module_level(module.tree.body):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _imported(module, node):
                    for name in _with_parents(target, module.name):
                        if name in known:
                            edges.setdefault(name, node.lineno)
        graph[module.name] = edges
    return graph


def _strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
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


def _cycle_through(graph: dict[str, dict[str, int]], group: list[str]) -> list[str]:
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
    for group in _strongly_connected(graph):
        cycle = _cycle_through(graph, group)
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
        if isinstance(node, ast.If) and _is_type_checking(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    known = parley_modules()
    for node in ast.walk(module.tree):
        if id(node) in hidden or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        targets = _imported(module, node)
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
    return [f for module in parley_modules().values() for f in _upward_imports(module)]


def _upward_imports(module: Module) -> list[Finding]:
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
        f for m in shipped_modules() if not m.path.is_relative_to(AUTOGEN_LAYER) for f in _autogen_imports(m)
    ]


def _autogen_imports(module: Module) -> list[Finding]:
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


# ---------------------------------------------------------------- private names


def _is_private(name: str) -> bool:
    return (
        name.startswith("_")
        and name.strip("_") != ""
        and not name.endswith("__")
        and name not in PUBLIC_BY_CONVENTION
    )


def _class_attributes(tree: ast.Module) -> set[str]:
    """The attributes this module's own objects have: names defined in its class bodies and the
    attributes its code assigns on `self` or `cls`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names |= _class_names(node)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store | ast.Del)
            and isinstance(node.value, ast.Name)
            and node.value.id in {"self", "cls"}
        ):
            names.add(node.attr)
    return names


def _class_names(node: ast.ClassDef) -> set[str]:
    """What a class body defines (methods, class attributes, nested classes), not counting nested functions."""
    names: set[str] = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(item.name)
        elif isinstance(item, ast.AnnAssign | ast.Assign | ast.AugAssign):
            targets = item.targets if isinstance(item, ast.Assign) else [item.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _defined_on_own_base(
    classes: dict[str, ast.ClassDef], name: str, attr: str, seen: frozenset[str] = frozenset()
) -> bool:
    """True if a base class of `name` that this module defines has `attr` (what `super().attr` reaches)."""
    node = classes.get(name)
    if node is None or name in seen:
        return False
    own_bases = [b.id for b in node.bases if isinstance(b, ast.Name) and b.id in classes]
    return any(
        attr in _class_names(classes[base]) or _defined_on_own_base(classes, base, attr, seen | {name})
        for base in own_bases
    )


def _is_parley(absolute: str) -> bool:
    return absolute == "parley" or absolute.startswith("parley.")


class _PrivateUses(ast.NodeVisitor):
    """Finds, in one module, each use of a private name that belongs to another module."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.own_attributes = _class_attributes(module.tree)
        self.classes = {n.name: n for n in ast.walk(module.tree) if isinstance(n, ast.ClassDef)}
        self.imported: dict[str, str] = {}  # local name -> the module it came from (or is)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                self.imported |= {a.asname or a.name.split(".")[0]: a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                self.imported |= {a.asname or a.name: self._base(node) for a in node.names}
        self.class_stack: list[str] = []
        self.found: list[Finding] = []

    def _base(self, node: ast.ImportFrom) -> str:
        return _base_of(self.module, node)

    def _add(self, node: ast.AST, name: str, message: str) -> None:
        self.found.append(Finding(self.module.rel, getattr(node, "lineno", 0), message, name))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._private_module(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._base(node)
        self._private_module(node, base)
        known = parley_modules()
        for alias in node.names:
            if f"{base}.{alias.name}" in known:
                self._private_module(node, f"{base}.{alias.name}")
            elif _is_private(alias.name) and not _is_parley(base):
                self._private_module(node, f"{base}.{alias.name}")  # a module or a name: private either way
            elif _is_private(alias.name):
                self._add(
                    node,
                    alias.name,
                    f"imports the private name {alias.name} from {base}. Fix: give it a public name there (no "
                    "leading underscore) if other modules need it, or move the code that uses it into that module.",
                )

    def _private_module(self, node: ast.AST, name: str) -> None:
        """A private module may be imported only from inside the package that holds it (and never a
        third-party one)."""
        parts = name.split(".")
        for i, part in enumerate(parts):
            package = ".".join(parts[:i])
            if (
                not _is_private(part)
                or self.module.name == package
                or self.module.name.startswith(package + ".")
            ):
                continue
            if _is_parley(name):
                self._add(
                    node,
                    part,
                    f"imports {name}, a private module of package {package}. Fix: import the name from {package} "
                    f"(export it there), or give the module a public name if it is meant for other packages.",
                )
            else:
                self._add(
                    node,
                    part,
                    f"imports {name}, a private module of a third-party package. Fix: use the package's public "
                    "API; if there is none, isolate the use in one module, list it in PRIVATE_ALLOWED with the "
                    "reason, and test that it fails loudly when the package changes.",
                )
            return

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.class_stack.append(node.name)
        self.generic_visit(node)
        self.class_stack.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_private(node.attr):
            self._check_attribute(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = (
            func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        )
        if (
            called in ATTRIBUTE_CALLS | {"__setattr__", "__getattribute__", "__delattr__"}
            and len(node.args) >= 2
        ):
            target, key = node.args[0], node.args[1]
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and _is_private(key.value):
                self._check_attribute(node, target, key.value)
        self.generic_visit(node)

    def _check_attribute(self, node: ast.AST, value: ast.expr, attr: str) -> None:
        fix = (
            ". Fix: give it a public name (a method or property) in the module that owns it, or move the "
            "logic there; for a third-party package with no public way, isolate the workaround in one module "
            "(PRIVATE_ALLOWED, with the reason and a test that fails if the package changes)."
        )
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            cls = self.class_stack[-1] if self.class_stack else ""
            if not _defined_on_own_base(self.classes, cls, attr):
                self._add(
                    node,
                    attr,
                    f"super().{attr} reaches a private name of a base class from another module" + fix,
                )
        elif isinstance(value, ast.Name) and value.id in self.imported and value.id not in self.classes:
            source = self.imported[value.id]
            if (source, attr) in DOCUMENTED_PRIVATE:
                return
            self._add(
                node, attr, f"{value.id}.{attr} uses a private name of {value.id} (from {source})" + fix
            )
        elif attr in self.own_attributes:
            return  # this module's own private attribute, on its own objects
        elif isinstance(value, ast.Name) and value.id in {"self", "cls"}:
            self._add(
                node,
                attr,
                f"{value.id}.{attr} uses {attr}, which this module never defines: a private name inherited from "
                "a class of another module" + fix,
            )
        else:
            self._add(
                node,
                attr,
                f"{ast.unparse(value)}.{attr} uses the private name {attr} of an object from another module"
                + fix,
            )


def _private_uses(module: Module) -> list[Finding]:
    visitor = _PrivateUses(module)
    visitor.visit(module.tree)
    return visitor.found


def private_findings(*, allowed: bool = True) -> list[Finding]:
    found = [f for module in shipped_modules() for f in _private_uses(module)]
    return [f for f in found if not (allowed and (f.file, f.name) in PRIVATE_ALLOWED)]


def _patched(node: ast.AST) -> str | None:
    """What a statement or call replaces an attribute of (`X.attr = ...`, `setattr(X, ...)`), or None;
    "object" for `object.__setattr__(...)`, which changes a frozen object behind its back."""
    if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [
            t.value.id for t in targets if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
        ]
        return names[0] if names else None
    if isinstance(node, ast.Call) and node.args:
        func, first = node.func, node.args[0]
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "__setattr__"
            and ast.unparse(func.value) == "object"
        ):
            return "object"
        if isinstance(func, ast.Name) and func.id == "setattr" and isinstance(first, ast.Name):
            return first.id
    return None


def _patches(module: Module) -> list[Finding]:
    """Attributes of an imported module or class replaced: a monkeypatch."""
    imported = _PrivateUses(module).imported
    own = {n.name for n in ast.walk(module.tree) if isinstance(n, ast.ClassDef)}
    found = []
    for node in ast.walk(module.tree):
        name = _patched(node)
        if name == "object" or (name in imported and name not in own):
            found.append(
                Finding(
                    module.rel,
                    getattr(node, "lineno", 0),
                    f"{ast.unparse(node)[:80]} patches another module's object. Fix: use the package's public "
                    "mechanism (a subclass, a hook, a setting); if there is none, move the patch into the one "
                    "module allowed for that package (MONKEYPATCH_ALLOWED) with a test that fails if the "
                    "package changes.",
                )
            )
    return found


def monkeypatch_findings() -> list[Finding]:
    return [f for m in shipped_modules() if m.rel not in MONKEYPATCH_ALLOWED for f in _patches(m)]


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


# ---------------------------------------------------------------- the tests


def _report(findings: list[Finding], rule: str) -> str:
    return f"{len(findings)} {rule}:\n" + "\n".join(str(f) for f in sorted(findings))


def test_parley_modules_import_each_other_one_way() -> None:
    found = cycle_findings()
    assert not found, _report(found, "import cycles among parley's modules")


def test_dependencies_go_from_the_adapters_down_to_the_engine() -> None:
    found = layer_findings()
    assert not found, _report(found, "imports of a layer above")


def test_only_the_autogen_layer_imports_autogen() -> None:
    found = autogen_findings()
    assert not found, _report(found, "AutoGen imports outside parley/engine/autogen/")


def test_no_module_uses_another_modules_private_names() -> None:
    found = private_findings()
    assert not found, _report(found, "uses of another module's private names")


def test_every_allowed_private_use_still_exists() -> None:
    """An allow-list entry whose use is gone must go too, or the list would only grow."""
    used = {(f.file, f.name) for f in private_findings(allowed=False)}
    stale = sorted(set(PRIVATE_ALLOWED) - used)
    assert not stale, f"PRIVATE_ALLOWED entries no longer used (remove them): {stale}"


def test_no_module_patches_another_outside_the_allowed_ones() -> None:
    found = monkeypatch_findings()
    assert not found, _report(found, "monkeypatches outside MONKEYPATCH_ALLOWED")


def test_no_module_is_over_the_size_limit() -> None:
    found = size_findings()
    assert not found, _report(found, f"modules over {MAX_LINES} lines")


def test_no_function_is_over_the_complexity_limit() -> None:
    found = complexity_findings()
    assert not found, _report(found, f"functions over cyclomatic complexity {MAX_COMPLEXITY}")


PROBE = """\
import json
from typing import TYPE_CHECKING
from parley.run import _secret
from parley.models._meter import STREAM_EVERY_S
from autogen_ext.models.openai._model_info import get_info
from autogen_core import CancellationToken
if TYPE_CHECKING:
    from autogen_agentchat.base import TaskResult
class A(json.JSONEncoder):
    def __init__(self):
        self._mine = 1
    def f(self, other, conv):
        return other._mine, conv._run, json._default_encoder, getattr(conv, "_pending"), self._inherited
    def g(self):
        return super()._iterencode
json.dumps = print
object.__setattr__(A, "f", None)
A.g = None
"""


def _probe() -> Module:
    return Module(
        "parley._architecture_probe", PACKAGE / "_architecture_probe.py", ast.parse(PROBE), PROBE.count("\n")
    )


def test_the_private_name_check_catches_each_kind_of_use() -> None:
    found = {f.name: f for f in _private_uses(_probe())}
    assert (
        found["_secret"].line == 3
        and "imports the private name _secret from parley.run" in found["_secret"].message
    )
    assert "conv._run" in found["_run"].message
    assert "json._default_encoder" in found["_default_encoder"].message
    assert found["_pending"].line == 13
    assert "never defines" in found["_inherited"].message
    assert "super()._iterencode" in found["_iterencode"].message
    assert "_mine" not in found  # the module's own private attribute, on an object of its own class
    assert "_meter" in found and "private module of package parley.models" in found["_meter"].message
    assert "_model_info" in found and "third-party" in found["_model_info"].message


def test_the_monkeypatch_check_catches_a_replaced_function() -> None:
    lines = sorted(f.line for f in _patches(_probe()))
    assert lines == [16, 17]  # json.dumps replaced, object.__setattr__; A is the module's own class


def test_the_layer_check_catches_an_engine_module_importing_the_conversation() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from ...conversation import Conversation\n"
        "from ... import events, run\n"
        "if TYPE_CHECKING:\n"
        "    from ...run import Run\n"
        "def later():\n"
        "    from ...cli import main\n"
    )
    probe = Module("parley.engine.autogen.probe", AUTOGEN_LAYER / "probe.py", ast.parse(source), 7)
    found = [(f.line, f.message.split(" (")[1].split(") imports ")[1]) for f in _upward_imports(probe)]
    assert found == [(2, "parley.conversation"), (3, "parley.run"), (7, "parley.cli")]


def test_the_autogen_check_catches_every_import_of_it() -> None:
    lines = sorted(f.line for f in _autogen_imports(_probe()))
    assert lines == [5, 6, 8]  # under TYPE_CHECKING too: the layer owns even the types


def test_the_cycle_check_finds_a_cycle_and_ignores_type_only_imports() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert _strongly_connected(graph) == [["a", "b", "c"]]
    assert _cycle_through(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import os\nelse:\n    import sys\n"
        "def f():\n    import re\n"
    )
    loaded = [n.names[0].name for n in _module_level(tree.body) if isinstance(n, ast.Import)]
    assert loaded == ["sys"]
