"""Tools that wait for a human: the call goes ahead only once someone approves it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from autogen_core import CancellationToken
from autogen_core.tools import FunctionTool

from .tools import ToolDef

# (role, tool, arguments, call id, token) -> (approved, reason)
Gate = Callable[[str, str, dict[str, Any], str | None, CancellationToken], Awaitable[tuple[bool, str]]]


class ToolDenied(Exception):
    """Raised inside a gated tool when the human says no; the agent sees it as the tool's error."""


class GatedTool(FunctionTool):
    """A registered tool whose every call first asks the run's gate."""

    def __init__(self, tooldef: ToolDef, role: str, gate: Gate) -> None:
        super().__init__(tooldef.func, description=tooldef.description, name=tooldef.name)
        self._role = role
        self._gate = gate

    async def run_json(
        self, args: Mapping[str, Any], cancellation_token: CancellationToken, call_id: str | None = None
    ) -> Any:
        approved, reason = await self._gate(self._role, self.name, dict(args), call_id, cancellation_token)
        if not approved:
            because = f": {reason}" if reason else ""
            raise ToolDenied(f"the call to {self.name} was denied{because}. Do not retry it unchanged.")
        return await super().run_json(args, cancellation_token, call_id)
