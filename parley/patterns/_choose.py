"""Moved to parley.engine.autogen.choose (a shim until every importer has switched)."""

from ..engine.autogen.choose import choose, parse_choice

__all__ = ["choose", "parse_choice"]
