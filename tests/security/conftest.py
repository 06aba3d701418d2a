"""The security tests reuse the browser tests' real servers (tests/ui/conftest.py): `parley ui` in a
subprocess on a free loopback port, a scripted model, and Debian's Chromium."""

from __future__ import annotations

from ui.conftest import own_server

__all__ = ["own_server"]
