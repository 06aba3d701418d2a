"""A script's `role_delay_s`: one role streams slowly (a window for Stop or Interrupt), the others at `delay_s`."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley import TeamFileError
from parley.models import ScriptedModel


def _script(tmp_path: Path, text: str) -> ScriptedModel:
    path = tmp_path / "script.yaml"
    path.write_text(text, encoding="utf-8")
    return ScriptedModel.load(path)


def test_a_role_of_its_own_delay_streams_at_it_and_the_others_at_the_scripts(tmp_path: Path) -> None:
    model = _script(
        tmp_path, 'roles: {writer: ["a"], editor: ["b"]}\ndelay_s: 0.5\nrole_delay_s: {writer: 20}\n'
    )
    assert model.script.delay_for("writer") == 20
    assert model.script.delay_for("editor") == 0.5
    model.check_roles(["writer", "editor"])


def test_a_delay_for_a_role_the_team_does_not_have_is_refused_with_its_name(tmp_path: Path) -> None:
    model = _script(tmp_path, 'roles: {writer: ["a"]}\nrole_delay_s: {wrtier: 20}\n')
    with pytest.raises(TeamFileError) as info:
        model.check_roles(["writer", "editor"])
    assert "role_delay_s.wrtier" in str(info.value) and "did you mean 'writer'" in str(info.value)


def test_a_negative_delay_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TeamFileError, match="role_delay_s"):
        _script(tmp_path, 'roles: {writer: ["a"]}\nrole_delay_s: {writer: -1}\n')
