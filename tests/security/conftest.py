"""The security tests reuse the browser tests' real servers (tests/ui/conftest.py): `parley ui` in a
subprocess on a free loopback port, a scripted model, and Debian's Chromium."""

from __future__ import annotations

from ui.conftest import (
    new_page,
    own_server,
    pytest_runtest_makereport,
    ui_browser,
)

__all__ = ["new_page", "own_server", "pytest_runtest_makereport", "ui_browser"]
