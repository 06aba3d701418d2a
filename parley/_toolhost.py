"""How a conversation runs its tools: in a run context (workspace, shared notes), behind an
approval gate when the tool needs one, and with the files they write reported as events."""

# The run context itself lives in parley.tools, where tool authors look for it.

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from autogen_core import CancellationToken
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
            approved, reason = await self._host.approve_call(self._role, self.name, dict(args), call_id,
                                                             cancellation_token)
            if not approved:
                because = f": {reason}" if reason else ""
                raise ToolDenied(f"the call to {self.name} was denied{because}. Do not retry it unchanged.")
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
