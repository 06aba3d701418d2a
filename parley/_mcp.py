"""Moved: the grants and calls to parley._mcp_tools, the AutoGen tools to parley.engine.autogen.mcp (a shim until
every importer has switched)."""

from ._mcp_tools import model_name, needs_approval
from .engine.autogen.mcp import McpTool, load_grants

__all__ = ["McpTool", "load_grants", "model_name", "needs_approval"]
