"""MCP servers declared in a team file: their tools, granted to roles as `SERVER.TOOL` or `SERVER.*`.

A granted tool is shown to the model as `SERVER__TOOL` (model APIs allow no dots in tool names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import ConfigError
from .spec import McpServerSpec, TeamSpec


def model_name(server: str, tool: str) -> str:
    return f"{server}__{tool}"


async def _server_tools(spec: McpServerSpec) -> dict[str, Any]:
    from autogen_ext.tools.mcp import StdioServerParams, StreamableHttpServerParams, mcp_server_tools

    params: Any
    if spec.command is not None:
        params = StdioServerParams(command=spec.command, args=spec.args, env=spec.env or None, read_timeout_seconds=30)
    else:
        params = StreamableHttpServerParams(url=spec.url or "")
    try:
        adapters = await mcp_server_tools(params)
    except Exception as exc:
        raise ConfigError(f"MCP server '{spec.name}' could not be reached: {type(exc).__name__}: {exc}") from None
    tools = {}
    for adapter in adapters:
        original = adapter.name
        adapter._name = model_name(spec.name, original)  # what the model sees; the server still gets `original`
        tools[original] = adapter
    return tools


async def load_grants(team: TeamSpec, grants: dict[str, Sequence[str]]) -> dict[str, list[Any]]:
    """The MCP tools of each role, from grants like {'analyst': ['calc.add', 'docs.*']}."""
    servers = {m.name: m for m in team.mcp}
    offered: dict[str, dict[str, Any]] = {}
    out: dict[str, list[Any]] = {}
    for role, names in grants.items():
        for grant in names:
            server, _, tool = grant.partition(".")
            if server not in offered:
                offered[server] = await _server_tools(servers[server])
            tools = offered[server]
            if tool == "*":
                out.setdefault(role, []).extend(tools.values())
            elif tool in tools:
                out.setdefault(role, []).append(tools[tool])
            else:
                raise ConfigError(
                    f"role '{role}' is granted {grant}, but MCP server '{server}' offers: {', '.join(sorted(tools)) or 'nothing'}"
                )
    return out
