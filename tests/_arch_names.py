"""The private-name and monkeypatch checks of tests/test_architecture.py, with their allow-lists."""

from __future__ import annotations

import ast

from _arch_modules import Finding, Module, base_of, parley_modules, shipped_modules

# Uses of another module's private names that are accepted, each with its reason:
# {("parley/some/file.py", "_name"): "why there is no public way, and which test fails if it changes"}.
CHAINLIT_COOKIE = (
    "Chainlit has no public way to name or expire its login cookie; parley/web/_chainlit_fixes.py is the one module "
    "isolating the web chat's Chainlit workarounds, and its check() (asserted empty by tests/security/"
    "test_hostile_client.py::test_chainlit_is_still_what_parley_patches) fails if Chainlit changes them."
)
AUTOGEN_INTERNALS = (
    "AutoGen offers no public way (a team's participants, its graph, its manager's state key, the one hook for a "
    "single tool call, the runtime a team makes and its log and span payloads built for every message); parley/engine/autogen/internals.py is the one module using them, pinned by "
    "tests/test_autogen_internals.py, which fails naming what changed."
)
NEST_ASYNCIO = (
    "Chainlit's CLI applies nest_asyncio as it is imported, and neither offers a public way to undo it; "
    "parley/web/_chainlit_loop.py is the one module that puts asyncio's own tasks, futures and loop methods back "
    "(asyncio's C ones have no public name), and tests/test_chainlit_loop.py fails if Chainlit or nest_asyncio "
    "changes what it undoes."
)
PRIVATE_ALLOWED: dict[tuple[str, str], str] = {
    **{
        ("parley/web/_chainlit_loop.py", name): NEST_ASYNCIO
        for name in ("_nest_patched", "_asyncio", "_CTask", "_CFuture", "_get_event_loop")
    },
    ("parley/engine/autogen/internals.py", "_participants"): AUTOGEN_INTERNALS,
    ("parley/engine/autogen/internals.py", "_graph"): AUTOGEN_INTERNALS,
    ("parley/engine/autogen/internals.py", "_group_chat_manager_name"): AUTOGEN_INTERNALS,
    ("parley/engine/autogen/internals.py", "_execute_tool_call"): AUTOGEN_INTERNALS,
    **{
        ("parley/engine/autogen/internals.py", name): AUTOGEN_INTERNALS
        for name in ("_runtime", "_try_serialize", "_tracer_helper")
    },
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
    "parley/web/_chainlit_loop.py": NEST_ASYNCIO,
    "parley/web/_chainlit_pause.py": (
        "Chainlit has no option to build a message or step without a blocking 1 ms sleep on the event loop; "
        "this module alone replaces the `time` its two modules read, and its check() (asserted empty by tests/"
        "test_web_parts.py::test_chainlit_builds_messages_and_steps_without_pausing_the_event_loop) fails if "
        "Chainlit changes."
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


def is_parley(absolute: str) -> bool:
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
        return base_of(self.module, node)

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
            elif _is_private(alias.name) and not is_parley(base):
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
            if is_parley(name):
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


def private_uses(module: Module) -> list[Finding]:
    visitor = _PrivateUses(module)
    visitor.visit(module.tree)
    return visitor.found


def private_findings(*, allowed: bool = True) -> list[Finding]:
    found = [f for module in shipped_modules() for f in private_uses(module)]
    return [f for f in found if not (allowed and (f.file, f.name) in PRIVATE_ALLOWED)]


def patched(node: ast.AST) -> str | None:
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


def patches(module: Module) -> list[Finding]:
    """Attributes of an imported module or class replaced: a monkeypatch."""
    imported = _PrivateUses(module).imported
    own = {n.name for n in ast.walk(module.tree) if isinstance(n, ast.ClassDef)}
    found = []
    for node in ast.walk(module.tree):
        name = patched(node)
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
    return [f for m in shipped_modules() if m.rel not in MONKEYPATCH_ALLOWED for f in patches(m)]
