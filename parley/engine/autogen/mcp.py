"""MCP tools as AutoGen tools: each granted tool (see parley._mcp_tools) bound to one role, behind the host's
approval gate, its progress shown in the stream as it comes, the pictures it returns put on the role's shelf."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from autogen_core import CancellationToken
from autogen_core.tools import BaseStreamTool
from autogen_core.utils import schema_to_pydantic_model
from pydantic import BaseModel

from ..._mcp_session import McpHub
from ..._mcp_tools import Grant, McpCall, model_name, resolve_grants
from ...host import ApprovalHost
from ...spec import TeamSpec
from .agent import ParleyNotice, shown_now
from .images import ImageShelf, load_images
from .tools import gate

__all__ = ["McpTool", "load_grants"]


class McpTool(BaseStreamTool[BaseModel, ParleyNotice, Any]):
    """One MCP tool granted to one role: the server's schema, called through the conversation's session
    behind the host's approval gate. It returns text (AutoGen's type bound asks for a BaseModel, hence Any)."""

    def __init__(self, grant: Grant, host: ApprovalHost, shelf: ImageShelf | None = None) -> None:
        tool = grant.tool
        super().__init__(
            schema_to_pydantic_model(tool.inputSchema),
            str,
            model_name(grant.conn.name, tool.name),
            tool.description or "",
        )
        self.grant = grant
        """The grant: its `name` (`SERVER.TOOL`) is what a human, the approval rules and the audit know it by."""
        self.host = host
        self.shelf = shelf
        """Where the pictures it returns go, for a role whose model accepts images; None otherwise."""

    async def run(self, args: BaseModel, cancellation_token: CancellationToken) -> str:
        result = ""
        async for item in self._call(args.model_dump(exclude_unset=True), cancellation_token, None):
            if isinstance(item, str):
                result = item
        return result

    async def run_stream(
        self,
        args: BaseModel,
        cancellation_token: CancellationToken,
    ) -> AsyncGenerator[ParleyNotice | str, None]:
        async for item in self._call(args.model_dump(exclude_unset=True), cancellation_token, None):
            yield item

    async def run_json_stream(
        self, args: Mapping[str, Any], cancellation_token: CancellationToken, call_id: str | None = None
    ) -> AsyncGenerator[ParleyNotice | str, None]:
        if self.grant.approval:
            await gate(self.host, self.grant.role, self.grant.name, args, call_id, cancellation_token)
        checked = self.args_type().model_validate(args).model_dump(exclude_unset=True)
        async for item in self._call(checked, cancellation_token, call_id):
            yield item

    async def _call(
        self,
        args: dict[str, Any],
        token: CancellationToken,
        call_id: str | None,
    ) -> AsyncGenerator[ParleyNotice | str, None]:
        call = McpCall(self.grant, args, call_id)
        token.link_future(call.work)
        try:
            async for event in call.progress():
                for notice in shown_now(self.grant.role, event):  # shown while the call goes on
                    yield notice
            call.work.result()
        finally:
            call.abandon()
        yield await self._converted(call, call_id)

    async def _converted(self, call: McpCall, call_id: str | None) -> str:
        role = self.grant.role
        out = await call.converted(self.host.context_for(role).workspace)
        if out.files:
            self.host.files_written(role, self.grant.name, out.files)
        failure = call.failure(out)
        if failure is not None:
            raise failure
        if self.shelf is not None and out.images and call_id:
            self.shelf.put(call_id, await asyncio.to_thread(load_images, out.images))
        return out.text

    def return_value_as_string(self, value: Any) -> str:
        return value if isinstance(value, str) else str(value)


async def load_grants(
    team: TeamSpec,
    grants: Mapping[str, Sequence[str]],
    host: ApprovalHost,
    hub: McpHub,
    shelves: Mapping[str, ImageShelf] | None = None,
) -> dict[str, list[Any]]:
    """The MCP tools of each role (see parley._mcp_tools.resolve_grants), each bound to `host`'s approval gate
    and called through `hub`'s sessions. A role in `shelves` (its model accepts images) is shown the pictures
    its tools return."""
    shelves = shelves or {}
    resolved = await resolve_grants(team, grants, hub)
    return {
        role: [McpTool(g, host, shelves.get(role)) for g in granted] for role, granted in resolved.items()
    }
