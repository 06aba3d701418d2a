"""Moved: the AutoGen side to parley.engine.autogen.tools, the checks and standing rules to parley._calls, the
host protocol to parley.host (a shim until every importer has switched)."""

from ._calls import MAX_ARGUMENTS, ToolDenied, call_problem, standing_decision
from .engine.autogen.tools import BoundTool, checked_call, gate
from .host import ToolHost

__all__ = [
    "MAX_ARGUMENTS",
    "BoundTool",
    "ToolDenied",
    "ToolHost",
    "call_problem",
    "checked_call",
    "gate",
    "standing_decision",
]
