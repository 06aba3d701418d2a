"""MCP servers declared in a team file: their tools, granted to roles as `SERVER.TOOL` or `SERVER.*`.

A granted tool is shown to the model as `SERVER__TOOL` (model APIs allow no dots in tool names), and
to the human, the approval rules and the audit as `SERVER.TOOL`. Each call passes the same approval
gate as a built-in tool: the team file's `approvals:` (`SERVER.TOOL`, or `SERVER.*` for every tool of
a server) says whether a human must approve it, `--approve/--deny` rules answer by the same names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autogen_core import CancellationToken
from autogen_core.tools import BaseTool
from pydantic import BaseModel

from ._toolhost import ToolHost, gate
from .errors import ConfigError
from .spec import McpServerSpec, TeamSpec


def model_name(server: str, tool: str) -> str:
    return f"{server}__{tool}"


def needs_approval(approvals: Mapping[str, str], server: str, tool: str) -> bool:
    """The team file's rule for one MCP tool: `SERVER.TOOL` first, then `SERVER.*`; no rule, no approval."""
    rule = approvals.get(f"{server}.{tool}", approvals.get(f"{server}.*"))
    return rule == "required"


class McpTool(BaseTool[BaseModel, Any]):
    """One MCP tool granted to one role: the adapter's schema and call, behind the host's approval gate."""

    def __init__(self, adapter: BaseTool[BaseModel, Any], server: str, role: str, host: ToolHost,
                 approval: bool) -> None:
        super().__init__(adapter.args_type(), adapter.return_type(), model_name(server, adapter.name),
                         adapter.description)
        self._adapter = adapter
        self._role = role
        self._host = host
        self.approval = approval
        self.grant = f"{server}.{adapter.name}"
        """The name a human, the approval rules and the audit know this tool by."""

    async def run(self, args: BaseModel, cancellation_token: CancellationToken) -> Any:
        return await self._adapter.run(args, cancellation_token)

    async def run_json(self, args: Mapping[str, Any], cancellation_token: CancellationToken,
                       call_id: str | None = None) -> Any:
        if self.approval:
            await gate(self._host, self._role, self.grant, args, call_id, cancellation_token)
        return await self._adapter.run_json(args, cancellation_token, call_id=call_id)

    def return_value_as_string(self, value: Any) -> str:
        return self._adapter.return_value_as_string(value)


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
    return {adapter.name: adapter for adapter in adapters}


async def load_grants(team: TeamSpec, grants: dict[str, Sequence[str]], host: ToolHost) -> dict[str, list[Any]]:
    """The MCP tools of each role, from grants like {'analyst': ['calc.add', 'docs.*']}, each bound to
    `host`'s approval gate as the team's `approvals:` say."""
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
                chosen = list(tools.values())
            elif tool in tools:
                chosen = [tools[tool]]
            else:
                raise ConfigError(
                    f"role '{role}' is granted {grant}, but MCP server '{server}' offers: {', '.join(sorted(tools)) or 'nothing'}"
                )
            out.setdefault(role, []).extend(
                McpTool(a, server, role, host, needs_approval(team.approvals, server, a.name)) for a in chosen)
    for key in team.approvals:
        server, dot, tool = key.partition(".")
        if dot and tool != "*" and server in offered and tool not in offered[server]:
            raise ConfigError(f"approvals names {key}, but MCP server '{server}' offers: "
                              f"{', '.join(sorted(offered[server])) or 'nothing'}")
    return out
