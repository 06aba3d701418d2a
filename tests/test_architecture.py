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

Each failure names the file and line and says how to fix it. The checks live in tests/_arch_modules.py
(modules, imports, layers with ADAPTERS, sizes) and tests/_arch_names.py (private names and monkeypatches, with
their allow-lists PRIVATE_ALLOWED and MONKEYPATCH_ALLOWED: each entry gives its reason).
"""

from __future__ import annotations

import ast

from _arch_modules import (
    AUTOGEN_LAYER,
    MAX_COMPLEXITY,
    MAX_LINES,
    PACKAGE,
    Finding,
    Module,
    autogen_findings,
    autogen_imports,
    complexity_findings,
    cycle_findings,
    cycle_through,
    layer_findings,
    module_level,
    size_findings,
    strongly_connected,
    upward_imports,
)
from _arch_names import (
    PRIVATE_ALLOWED,
    monkeypatch_findings,
    patches,
    private_findings,
    private_uses,
)


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
    found = {f.name: f for f in private_uses(_probe())}
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
    lines = sorted(f.line for f in patches(_probe()))
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
    found = [(f.line, f.message.split(" (")[1].split(") imports ")[1]) for f in upward_imports(probe)]
    assert found == [(2, "parley.conversation"), (3, "parley.run"), (7, "parley.cli")]


def test_the_autogen_check_catches_every_import_of_it() -> None:
    lines = sorted(f.line for f in autogen_imports(_probe()))
    assert lines == [5, 6, 8]  # under TYPE_CHECKING too: the layer owns even the types


def test_the_cycle_check_finds_a_cycle_and_ignores_type_only_imports() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert cycle_through(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import os\nelse:\n    import sys\n"
        "def f():\n    import re\n"
    )
    loaded = [n.names[0].name for n in module_level(tree.body) if isinstance(n, ast.Import)]
    assert loaded == ["sys"]


def test_the_autogen_layers_init_imports_nothing() -> None:
    """Importing one module of the AutoGen layer must not load all of it (nor its import order decide cycles)."""
    init = AUTOGEN_LAYER / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    found = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert found == [], (
        f"{init.relative_to(PACKAGE.parent)}:{found[0] if found else 0}: keep it free of imports"
    )
