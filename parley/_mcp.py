"""MCP servers declared in a team file: their tools, granted to roles as `SERVER.TOOL` or `SERVER.*`.

A granted tool is shown to the model as `SERVER__TOOL` (model APIs allow no dots in tool names), and
to the human, the approval rules and the audit as `SERVER.TOOL`. Each call passes the same approval
gate as a built-in tool: the team file's `approvals:` (`SERVER.TOOL`, or `SERVER.*` for every tool of
a server) says whether a human must approve it, `--approve/--deny` rules answer by the same names.

Calls go through the conversation's one session per server (see _mcp_session); what the server reports
while a call runs (progress, log lines) is shown as it comes, and its result is converted to text (see
_mcp_result), with images and other binary parts saved as files in the role's workspace.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from autogen_core import CancellationToken
from autogen_core.tools import BaseStreamTool
from autogen_core.utils import schema_to_pydantic_model
from mcp import types
from pydantic import BaseModel

from ._agent import ParleyNotice, shown_now
from ._mcp_images import ImageShelf, load_images
from ._mcp_result import convert
from ._mcp_session import McpCallError, McpConnection, McpHub
from ._toolhost import ToolHost, gate
from .errors import ConfigError
from .events import ToolProgressEvent
from .spec import TeamSpec

__all__ = ["McpTool", "load_grants", "model_name", "needs_approval"]


def model_name(server: str, tool: str) -> str:
    return f"{server}__{tool}"


def needs_approval(approvals: Mapping[str, str], server: str, tool: str) -> bool:
    """The team file's rule for one MCP tool: `SERVER.TOOL` first, then `SERVER.*`; no rule, no approval."""
    rule = approvals.get(f"{server}.{tool}", approvals.get(f"{server}.*"))
    return rule == "required"


class McpTool(BaseStreamTool[BaseModel, ParleyNotice, str]):
    """One MCP tool granted to one role: the server's schema, called through the conversation's session
    behind the host's approval gate."""

    def __init__(self, tool: types.Tool, conn: McpConnection, role: str, host: ToolHost, approval: bool,
                 shelf: ImageShelf | None = None) -> None:
        super().__init__(schema_to_pydantic_model(tool.inputSchema), str, model_name(conn.name, tool.name),
                         tool.description or "")
        self._tool = tool
        self._conn = conn
        self._role = role
        self._host = host
        self.approval = approval
        self._shelf = shelf
        """Where the pictures it returns go, for a role whose model accepts images; None otherwise."""
        self.grant = f"{conn.name}.{tool.name}"
        """The name a human, the approval rules and the audit know this tool by."""

    async def run(self, args: BaseModel, cancellation_token: CancellationToken) -> str:
        result = ""
        async for item in self._call(args.model_dump(exclude_unset=True), cancellation_token, None):
            if isinstance(item, str):
                result = item
        return result

    async def run_stream(self, args: BaseModel, cancellation_token: CancellationToken,
                         ) -> AsyncGenerator[ParleyNotice | str, None]:
        async for item in self._call(args.model_dump(exclude_unset=True), cancellation_token, None):
            yield item

    async def run_json_stream(self, args: Mapping[str, Any], cancellation_token: CancellationToken,
                              call_id: str | None = None) -> AsyncGenerator[ParleyNotice | str, None]:
        if self.approval:
            await gate(self._host, self._role, self.grant, args, call_id, cancellation_token)
        checked = self.args_type().model_validate(args).model_dump(exclude_unset=True)
        async for item in self._call(checked, cancellation_token, call_id):
            yield item

    async def _call(self, args: dict[str, Any], token: CancellationToken, call_id: str | None,
                    ) -> AsyncGenerator[ParleyNotice | str, None]:
        shown: asyncio.Queue[ToolProgressEvent] = asyncio.Queue()

        def event(**fields: Any) -> ToolProgressEvent:
            return ToolProgressEvent(source=self._role, name=self.grant, call_id=call_id or "", **fields)

        async def progress(done: float, total: float | None, message: str | None) -> None:
            shown.put_nowait(event(progress=done, total=total, content=message or ""))

        def log(level: str, line: str) -> None:
            shown.put_nowait(event(level=level, content=line))

        work = asyncio.ensure_future(self._conn.call(self._tool.name, args, progress=progress, log=log))
        token.link_future(work)
        try:
            while not work.done() or not shown.empty():
                if shown.empty():
                    waiting = asyncio.ensure_future(shown.get())
                    await asyncio.wait({work, waiting}, return_when=asyncio.FIRST_COMPLETED)
                    if not waiting.done():
                        waiting.cancel()
                        continue
                    item = waiting.result()
                else:
                    item = shown.get_nowait()
                for notice in shown_now(self._role, item):  # shown while the call goes on
                    yield notice
            result = work.result()
        finally:
            if not work.done():
                work.cancel()
        yield await self._converted(result, call_id)

    async def _converted(self, result: types.CallToolResult, call_id: str | None) -> str:
        spec = self._conn.spec
        folder = self._host.context_for(self._role).workspace
        out = await asyncio.to_thread(convert, result, limit=spec.max_result_chars, folder=folder,
                                      stem=f"{spec.name}-{self._tool.name}")
        if out.files:
            self._host.files_written(self._role, self.grant, out.files)
        if self._shelf is not None and out.images and call_id and not result.isError:
            self._shelf.put(call_id, await asyncio.to_thread(load_images, out.images))
        if result.isError:
            raise McpCallError(out.text or f"{self.grant} failed (the server gave no reason)")
        return out.text

    def return_value_as_string(self, value: Any) -> str:
        return value if isinstance(value, str) else str(value)


async def load_grants(team: TeamSpec, grants: dict[str, Sequence[str]], host: ToolHost, hub: McpHub,
                      shelves: Mapping[str, ImageShelf] | None = None) -> dict[str, list[Any]]:
    """The MCP tools of each role, from grants like {'analyst': ['calc.add', 'docs.*']}, each bound to
    `host`'s approval gate as the team's `approvals:` say, and called through `hub`'s sessions. A role in
    `shelves` (its model accepts images) is shown the pictures its tools return."""
    shelves = shelves or {}
    servers = {m.name: m for m in team.mcp}
    offered: dict[str, McpConnection] = {}
    out: dict[str, list[Any]] = {}
    for role, names in grants.items():
        for grant in names:
            server, _, tool = grant.partition(".")
            if server not in offered:
                conn = hub.connection(servers[server])
                try:
                    await conn.session()
                except McpCallError as exc:
                    raise ConfigError(str(exc)) from None
                offered[server] = conn
            tools = offered[server].tools
            if tool == "*":
                chosen = list(tools.values())
            elif tool in tools:
                chosen = [tools[tool]]
            else:
                raise ConfigError(
                    f"role '{role}' is granted {grant}, but MCP server '{server}' offers: {', '.join(sorted(tools)) or 'nothing'}"
                )
            out.setdefault(role, []).extend(
                McpTool(t, offered[server], role, host, needs_approval(team.approvals, server, t.name),
                        shelves.get(role)) for t in chosen)
    for key in team.approvals:
        server, dot, tool = key.partition(".")
        if dot and tool != "*" and server in offered and tool not in offered[server].tools:
            raise ConfigError(f"approvals names {key}, but MCP server '{server}' offers: "
                              f"{', '.join(sorted(offered[server].tools)) or 'nothing'}")
    return out
