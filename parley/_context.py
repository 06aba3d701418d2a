"""Moved: the view policy to parley._window, the AutoGen model context and the summariser to
parley.engine.autogen.context (a shim until every importer has switched)."""

from ._window import HUMAN, KEEP_HUMAN, SUMMARY_CHARS, SUMMARY_SOURCE, TURN_CHARS
from .engine.autogen.context import PolicyContext, Summariser

__all__ = [
    "HUMAN",
    "KEEP_HUMAN",
    "SUMMARY_CHARS",
    "SUMMARY_SOURCE",
    "TURN_CHARS",
    "PolicyContext",
    "Summariser",
]
