"""MCP servers declared in a team file: their tools, granted to roles as `SERVER.TOOL` or `SERVER.*`.

A granted tool is shown to the model as `SERVER__TOOL` (model APIs allow no dots in tool names), and
to the human, the approval rules and the audit as `SERVER.TOOL`. Each call passes the same approval
gate as a built-in tool: the team file's `approvals:` (`SERVER.TOOL`, or `SERVER.*` for every tool of
a server) says whether a human must approve it, `--approve/--deny` rules answer by the same names.

Calls go through the conversation's one session per server (see _mcp_session); what the server reports
while a call runs (progress, log lines) is shown as it comes, and its result is converted to text (see
_mcp_result), with images and other binary parts saved as files in the role's workspace. This module is
parley's side of it, whatever engine runs the tools (see parley.engine.autogen.mcp).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import types

from ._mcp_result import Converted, convert
from ._mcp_session import McpCallError, McpConnection, McpHub
from .errors import ConfigError
from .events import ToolProgressEvent
from .spec import TeamSpec

__all__ = ["Grant", "McpCall", "model_name", "needs_approval", "resolve_grants"]


def model_name(server: str, tool: str) -> str:
    return f"{server}__{tool}"


def needs_approval(approvals: Mapping[str, str], server: str, tool: str) -> bool:
    """The team file's rule for one MCP tool: `SERVER.TOOL` first, then `SERVER.*`; no rule, no approval."""
    rule = approvals.get(f"{server}.{tool}", approvals.get(f"{server}.*"))
    return rule == "required"


@dataclass(frozen=True)
class Grant:
    """One MCP tool granted to one role."""

    role: str
    conn: McpConnection
    tool: types.Tool
    approval: bool

    @property
    def name(self) -> str:
        """The name a human, the approval rules and the audit know this tool by."""
        return f"{self.conn.name}.{self.tool.name}"


def _offers(conn: McpConnection) -> str:
    return ", ".join(sorted(conn.tools)) or "nothing"


async def _open(hub: McpHub, team: TeamSpec, server: str, opened: dict[str, McpConnection]) -> McpConnection:
    if server not in opened:
        conn = hub.connection({m.name: m for m in team.mcp}[server])
        try:
            await conn.session()
        except McpCallError as exc:
            raise ConfigError(str(exc)) from None
        opened[server] = conn
    return opened[server]


def _chosen(conn: McpConnection, role: str, grant: str) -> list[types.Tool]:
    tool = grant.partition(".")[2]
    if tool == "*":
        return list(conn.tools.values())
    if tool in conn.tools:
        return [conn.tools[tool]]
    raise ConfigError(
        f"role '{role}' is granted {grant}, but MCP server '{conn.name}' offers: {_offers(conn)}"
    )


def _check_approvals(team: TeamSpec, opened: Mapping[str, McpConnection]) -> None:
    for key in team.approvals:
        server, dot, tool = key.partition(".")
        if dot and tool != "*" and server in opened and tool not in opened[server].tools:
            raise ConfigError(
                f"approvals names {key}, but MCP server '{server}' offers: {_offers(opened[server])}"
            )


async def resolve_grants(
    team: TeamSpec, grants: Mapping[str, Sequence[str]], hub: McpHub
) -> dict[str, list[Grant]]:
    """The MCP tools of each role, from grants like {'analyst': ['calc.add', 'docs.*']}, each marked as the
    team's `approvals:` say, their servers started through `hub`. A grant the server does not offer, or an
    approval rule naming a tool it does not offer, is a ConfigError."""
    opened: dict[str, McpConnection] = {}
    out: dict[str, list[Grant]] = {}
    for role, names in grants.items():
        for grant in names:
            conn = await _open(hub, team, grant.partition(".")[0], opened)
            out.setdefault(role, []).extend(
                Grant(role, conn, t, needs_approval(team.approvals, conn.name, t.name))
                for t in _chosen(conn, role, grant)
            )
    _check_approvals(team, opened)
    return out


class McpCall:
    """One call of a granted tool in progress: the server's progress and log lines as events while it runs,
    then its result. `work` is the call itself: cancel it to abandon the call."""

    def __init__(self, grant: Grant, args: dict[str, Any], call_id: str | None) -> None:
        self.grant = grant
        self.call_id = call_id
        self._shown: asyncio.Queue[ToolProgressEvent] = asyncio.Queue()
        self.work: asyncio.Future[types.CallToolResult] = asyncio.ensure_future(
            grant.conn.call(grant.tool.name, args, progress=self._progress, log=self._log)
        )

    def _event(self, **fields: Any) -> ToolProgressEvent:
        return ToolProgressEvent(
            source=self.grant.role, name=self.grant.name, call_id=self.call_id or "", **fields
        )

    async def _progress(self, progress: float, total: float | None, message: str | None) -> None:
        self._shown.put_nowait(self._event(progress=progress, total=total, content=message or ""))

    def _log(self, level: str, line: str) -> None:
        self._shown.put_nowait(self._event(level=level, content=line))

    async def progress(self) -> AsyncGenerator[ToolProgressEvent, None]:
        """What the server reports, as it comes, until the call has ended and everything it reported is out."""
        while not self.work.done() or not self._shown.empty():
            if not self._shown.empty():
                yield self._shown.get_nowait()
                continue
            waiting = asyncio.ensure_future(self._shown.get())
            await asyncio.wait({self.work, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                yield waiting.result()
            else:
                waiting.cancel()

    def abandon(self) -> None:
        """Stop the call if it still runs (the run was stopped, or the caller went away)."""
        if not self.work.done():
            self.work.cancel()

    async def converted(self, folder: Path | None) -> Converted:
        """The ended call's result as text, its binary parts saved in `folder`."""
        spec = self.grant.conn.spec
        return await asyncio.to_thread(
            convert,
            self.work.result(),
            limit=spec.max_result_chars,
            folder=folder,
            stem=f"{spec.name}-{self.grant.tool.name}",
        )

    def failure(self, out: Converted) -> McpCallError | None:
        """The error the call ended with, when the server said it failed."""
        if not self.work.result().isError:
            return None
        return McpCallError(out.text or f"{self.grant.name} failed (the server gave no reason)")
