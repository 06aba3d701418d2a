"""Team, suite and script files are data: hostile YAML fails fast with a clear error, and nothing runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from parley.errors import TeamFileError
from parley.evals import load_suite
from parley.models import ScriptedModel
from parley.spec import load_team_file

Write = Callable[[str, str], Path]

LAUGHS = "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
    f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
    for i in range(8)
)
HOSTILE = {
    "billion laughs": (LAUGHS, "expands to more than"),
    "deep nesting": ("x: " + "[" * 5000 + "]" * 5000 + "\n", "nests"),
    "python object": ("name: !!python/object/apply:os.system ['touch /tmp/parley-pwned']\n", "invalid YAML"),
    "huge file": ("name: t\n" + "# padding\n" * 150_000, "files over 1,000,000 bytes are refused"),
}
LOADERS = {"team": load_team_file, "suite": load_suite, "script": ScriptedModel.load}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_yaml_fails_fast_with_a_clear_error(write: Write, loader: str, case: str) -> None:
    text, message = HOSTILE[case]
    path = write("hostile.yaml", text)
    with pytest.raises(TeamFileError) as err:
        LOADERS[loader](path)
    assert message in str(err.value) and "hostile.yaml" in str(err.value)
    assert not Path("/tmp/parley-pwned").exists()
