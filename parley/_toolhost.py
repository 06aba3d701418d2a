"""How a conversation runs its tools: in a run context (workspace, shared notes), behind an
approval gate when the tool needs one, and with the files they write reported as events."""

# The run context itself lives in parley.tools, where tool authors look for it.

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import FunctionExecutionResult
from autogen_core.tools import FunctionTool
from pydantic import BaseModel

from .tools import _CURRENT, RunContext, ToolDef


class ToolDenied(Exception):
    """Raised inside a gated tool when the human says no; the agent sees it as the tool's error."""


class ToolHost(Protocol):
    def context_for(self, role: str) -> RunContext: ...

    async def approve_call(self, role: str, tool: str, args: dict[str, Any], call_id: str | None,
                           token: CancellationToken) -> tuple[bool, str]: ...

    def files_written(self, role: str, tool: str, paths: list[Path]) -> None: ...


MAX_ARGUMENTS = 256 * 1024
"""Characters of one tool call's arguments. A model that sends more gets a tool error, not a call."""


def standing_decision(rules: Mapping[str, bool], tool: str) -> bool | None:
    """The standing answer (--approve/--deny) for `tool`: its own name first, then `SERVER.*` for an MCP
    tool named `SERVER.TOOL`, then `*`; None when a human must decide."""
    if tool in rules:
        return rules[tool]
    server, dot, _ = tool.partition(".")
    if dot and f"{server}.*" in rules:
        return rules[f"{server}.*"]
    return rules.get("*")


async def gate(host: ToolHost, role: str, tool: str, args: Mapping[str, Any], call_id: str | None,
               token: CancellationToken) -> None:
    """Wait for the human's (or a standing rule's) decision on one call; raise ToolDenied on a no."""
    approved, reason = await host.approve_call(role, tool, dict(args), call_id, token)
    if not approved:
        because = f": {reason}" if reason else ""
        raise ToolDenied(f"the call to {tool} was denied{because}. Do not retry it unchanged.")


def call_problem(name: str, arguments: str, offered: Sequence[str]) -> str | None:
    """Why a model's tool call cannot run, in words the model can act on; None when it can.

    A model is not trusted to name a tool it was given, or to send its arguments as one JSON object:
    each of these becomes the call's error result, never a crash of the run."""
    if name not in offered:
        shown = name if len(name) <= 80 else name[:79] + "…"
        return (f"Error: there is no tool {shown!r} for you. Your tools are: {', '.join(offered) or 'none'}. "
                "Call one of them by its exact name, or answer without a tool.")
    if len(arguments) > MAX_ARGUMENTS:
        return (f"Error: the arguments of {name} are {len(arguments):,} characters; the limit is {MAX_ARGUMENTS:,}. "
                "Send less (write large content in several smaller calls).")
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError as exc:
        return f"Error: the arguments of {name} are not valid JSON ({exc}). Send them as one JSON object."
    except RecursionError:
        return f"Error: the arguments of {name} are nested too deeply to read. Send them as one flat JSON object."
    if not isinstance(value, dict):
        return (f"Error: the arguments of {name} must be one JSON object (names to values), "
                f"not a JSON {type(value).__name__}.")
    return None


async def checked_call(execute: Callable[..., Awaitable[Any]], *, tool_call: FunctionCall, workbench: Sequence[Any],
                       handoff_tools: Sequence[Any], **rest: Any) -> Any:
    """AutoGen's execution of one tool call (`execute`), after `call_problem` found nothing wrong with it.
    AutoGen itself would raise on a hand-off called with arguments that are not an object (ending the run)."""
    offered = [t["name"] for wb in workbench for t in await wb.list_tools()] + [h.name for h in handoff_tools]
    if not tool_call.arguments.strip():  # some servers send nothing for a call without parameters
        tool_call = FunctionCall(id=tool_call.id, name=tool_call.name, arguments="{}")
    problem = call_problem(tool_call.name, tool_call.arguments, offered)
    if problem is not None:
        return tool_call, FunctionExecutionResult(content=problem, call_id=tool_call.id, is_error=True,
                                                  name=tool_call.name)
    return await execute(tool_call=tool_call, workbench=workbench, handoff_tools=handoff_tools, **rest)


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    if not folder.is_dir():
        return {}
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


class BoundTool(FunctionTool):
    """A registered tool bound to one role of one conversation."""

    def __init__(self, tooldef: ToolDef, role: str, host: ToolHost) -> None:
        super().__init__(tooldef.func, description=tooldef.description, name=tooldef.name)
        self._def = tooldef
        self._role = role
        self._host = host

    async def run_json(
        self, args: Mapping[str, Any], cancellation_token: CancellationToken, call_id: str | None = None
    ) -> Any:
        if self._def.approval:
            await gate(self._host, self._role, self.name, args, call_id, cancellation_token)
        ctx = self._host.context_for(self._role)
        before = _snapshot(ctx.workspace)
        token = _CURRENT.set(ctx)
        try:
            return await super().run_json(args, cancellation_token, call_id)
        finally:
            _CURRENT.reset(token)
            after = _snapshot(ctx.workspace)
            changed = sorted(p for p, stamp in after.items() if before.get(p) != stamp)
            if changed:
                self._host.files_written(self._role, self.name, changed)

    async def run(self, args: BaseModel, cancellation_token: CancellationToken) -> Any:
        if inspect.iscoroutinefunction(self._def.func):
            return await super().run(args, cancellation_token)
        params = inspect.signature(self._def.func).parameters
        kwargs = {name: getattr(args, name) for name in params if hasattr(args, name)}
        if "cancellation_token" in params:
            kwargs["cancellation_token"] = cancellation_token
        return await _in_daemon_thread(self._def.func, **kwargs)


async def _in_daemon_thread(func: Any, /, **kwargs: Any) -> Any:
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

    threading.Thread(target=work, name=f"parley-tool-{getattr(func, '__name__', 'tool')}", daemon=True).start()
    return await done
