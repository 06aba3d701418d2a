"""Moved to parley.engine.autogen.agent (a shim until every importer has switched)."""

from .engine.autogen.agent import ParleyNotice, shown_now

__all__ = ["ParleyNotice", "shown_now"]
