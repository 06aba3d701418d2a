"""parley's tools as AutoGen tools: a registered tool bound to one role of one conversation, run in the role's
run context, behind the host's approval gate, with the files it writes reported; and the check every model
call passes before AutoGen runs it (see parley._calls)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import FunctionExecutionResult
from autogen_core.tools import FunctionTool
from pydantic import BaseModel

from ..._calls import call_problem, denial
from ...host import ApprovalHost
from ...tools import ToolDef, use_context

__all__ = ["BoundTool", "as_function_tool", "checked_call", "gate", "in_daemon_thread"]


def as_function_tool(tooldef: ToolDef[..., Any]) -> FunctionTool:
    """The tool as a plain AutoGen FunctionTool: no run context, no approval gate (for use outside a conversation)."""
    return FunctionTool(tooldef.func, description=tooldef.description, name=tooldef.name)


async def gate(
    host: ApprovalHost,
    role: str,
    tool: str,
    args: Mapping[str, Any],
    call_id: str | None,
    token: CancellationToken,
) -> None:
    """Wait for the human's (or a standing rule's) decision on one call; raise ToolDenied on a no. A cancelled
    run (`token`) abandons the wait."""
    decision = asyncio.ensure_future(host.request_approval(role, tool, dict(args), call_id))
    token.link_future(decision)
    approved, reason = await decision
    if not approved:
        raise denial(tool, reason)


async def checked_call(
    execute: Callable[..., Awaitable[Any]],
    *,
    tool_call: FunctionCall,
    workbench: Sequence[Any],
    handoff_tools: Sequence[Any],
    **rest: Any,
) -> Any:
    """AutoGen's execution of one tool call (`execute`), after `call_problem` found nothing wrong with it.
    AutoGen itself would raise on a hand-off called with arguments that are not an object (ending the run)."""
    offered = [t["name"] for wb in workbench for t in await wb.list_tools()] + [h.name for h in handoff_tools]
    if not tool_call.arguments.strip():  # some servers send nothing for a call without parameters
        tool_call = FunctionCall(id=tool_call.id, name=tool_call.name, arguments="{}")
    problem = call_problem(tool_call.name, tool_call.arguments, offered)
    if problem is not None:
        return tool_call, FunctionExecutionResult(
            content=problem, call_id=tool_call.id, is_error=True, name=tool_call.name
        )
    return await execute(tool_call=tool_call, workbench=workbench, handoff_tools=handoff_tools, **rest)


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    if not folder.is_dir():
        return {}
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


class BoundTool(FunctionTool):
    """A registered tool bound to one role of one conversation."""

    def __init__(self, tooldef: ToolDef[..., Any], role: str, host: ApprovalHost) -> None:
        super().__init__(tooldef.func, description=tooldef.description, name=tooldef.name)
        self.tooldef = tooldef
        self.role = role
        self.host = host

    async def run_json(
        self, args: Mapping[str, Any], cancellation_token: CancellationToken, call_id: str | None = None
    ) -> Any:
        if self.tooldef.approval:
            await gate(self.host, self.role, self.name, args, call_id, cancellation_token)
        ctx = self.host.context_for(self.role)
        before = _snapshot(ctx.workspace)
        try:
            with use_context(ctx):
                return await super().run_json(args, cancellation_token, call_id)
        finally:
            after = _snapshot(ctx.workspace)
            changed = sorted(p for p, stamp in after.items() if before.get(p) != stamp)
            if changed:
                self.host.files_written(self.role, self.name, changed)

    async def run(self, args: BaseModel, cancellation_token: CancellationToken) -> Any:
        func = self.tooldef.func
        if inspect.iscoroutinefunction(func):
            return await super().run(args, cancellation_token)
        params = inspect.signature(func).parameters
        kwargs = {name: getattr(args, name) for name in params if hasattr(args, name)}
        if "cancellation_token" in params:
            kwargs["cancellation_token"] = cancellation_token
        return await in_daemon_thread(func, **kwargs)


async def in_daemon_thread(func: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run a sync tool in a thread of its own that never holds the process open: a tool that never
    returns is abandoned when its run stops (time-out, stop), and the program can still exit. The
    run context is copied, so the tool sees it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def work() -> None:
        try:
            result, error = ctx.run(func, **kwargs), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop may be closed if the program has moved on
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(
        target=work, name=f"parley-tool-{getattr(func, '__name__', 'tool')}", daemon=True
    ).start()
    return await done
