"""The README and the public API stay true to the code."""

from __future__ import annotations

from pathlib import Path

import parley
from parley import errors

ROOT = Path(__file__).resolve().parent.parent


def test_readme_documents_both_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_error_class_is_exported() -> None:
    classes = [n for n in errors.__all__ if n != "FileProblem"]
    assert [n for n in classes if n not in parley.__all__] == []


def test_every_test_the_security_page_names_exists() -> None:
    """docs/security.md proves each line by naming a test: a renamed or removed test must not leave it lying."""
    import re

    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    missing, current = [], None
    for token in re.findall(r"`((?:tests/[\w/]+\.py)?(?:::\w+)?)`", text):
        path, _, name = token.partition("::")
        if path:
            current = ROOT / path
            if not current.is_file():
                missing.append(path)
                continue
        if (
            name
            and current is not None
            and not re.search(rf"^(async )?def {name}\(", current.read_text(), re.M)
        ):
            missing.append(f"{current.relative_to(ROOT)}::{name}")
    assert missing == [], f"docs/security.md names tests that do not exist: {missing}"
