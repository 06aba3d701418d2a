"""Which folder the web chat runs in: Chainlit reads its configuration there and empties its `.files` (every open
page's uploads) when the server stops, so servers started from one checkout need a folder each."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley._ui import web_root
from parley.errors import ConfigError
from parley.paths import shipped_root


def test_a_checkout_runs_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_WEB_DIR", raising=False)
    assert web_root() == shipped_root()


def test_a_folder_of_its_own_gets_the_web_files_and_keeps_what_the_server_wrote(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mine = tmp_path / "web-8001"
    monkeypatch.setenv("PARLEY_WEB_DIR", str(mine))
    assert web_root() == mine
    assert (mine / "app.py").read_bytes() == (shipped_root() / "app.py").read_bytes()
    assert (mine / ".chainlit" / "config.toml").is_file()
    assert (mine / "public" / "parley-mark.svg").is_file()
    (mine / ".files" / "session").mkdir(parents=True)  # an open page's uploads
    assert web_root() == mine  # the next start copies again ...
    assert (mine / ".files" / "session").is_dir()  # ... and leaves them alone


def test_naming_the_checkout_itself_runs_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_WEB_DIR", str(shipped_root()))
    assert web_root() == shipped_root()


def test_a_folder_that_cannot_be_made_says_which_and_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("PARLEY_WEB_DIR", str(tmp_path / "a-file" / "web"))
    with pytest.raises(ConfigError, match="PARLEY_WEB_DIR"):
        web_root()
