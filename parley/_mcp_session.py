"""One live session with one MCP server, kept for a whole conversation.

A session is opened on first use and kept across turns and runs (a stateful server keeps its state, and a
call costs a round trip, not a new server process). It is owned by one task of its own, because the `mcp`
library's transports must be entered and left in the same task. If the server dies, the next use starts it
again, once, with a notice; a second death is an error. Failures are reported by their cause: the program
could not start, it exited (with the tail of what it wrote to stderr), the connection was refused, or a
call timed out after the server's `timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import anyio
from mcp import ClientSession, McpError, types
from mcp.shared.session import ProgressFnT

from .errors import ConfigError
from .spec import McpServerSpec

__all__ = ["McpCallError", "McpConnection", "McpHub", "describe", "resolve_headers", "shown_url"]

Notice = Callable[[str], None]
LogSink = Callable[[str, str], None]
"""Called with (level, line) for each log message the server sends while a call of ours runs."""
Progress = ProgressFnT
"""Called with (progress, total, message) for each progress report of a call of ours."""

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
STDERR_TAIL = 1200
"""Characters of a dead server's stderr quoted in its error."""
CLOSE_WAIT_S = 5.0


class McpCallError(Exception):
    """A call that could not be completed, in words the role (and the human) can act on."""


def resolve_headers(spec: McpServerSpec) -> dict[str, str]:
    """The server's HTTP headers with each `${VAR}` taken from the environment; a missing one is a ConfigError."""
    out: dict[str, str] = {}
    for key, value in spec.headers.items():

        def sub(m: re.Match[str], key: str = key) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ConfigError(
                    f"MCP server '{spec.name}': header {key} uses ${{{name}}}, but the environment "
                    f"variable {name} is not set: set it before starting parley"
                )
            return os.environ[name]

        out[key] = _VAR.sub(sub, value)
    return out


def shown_url(url: str) -> str:
    """A URL as it may be shown: without a user name or password, and without the values of its query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    query = "&".join(f"{k}=…" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def describe(spec: McpServerSpec) -> str:
    """How the server is reached, for humans: the command line or the URL, never a header's value."""
    if spec.command is not None:
        return " ".join([spec.command, *spec.args])
    return shown_url(spec.url or "")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _program_cause(spec: McpServerSpec, err: BaseException) -> str | None:
    """Why a server program could not start, when that is what went wrong."""
    if spec.command is None:
        return None
    if isinstance(err, FileNotFoundError):
        return f"could not start `{spec.command}`: no such program (check command: in the team file)"
    if isinstance(err, PermissionError):
        return f"could not start `{spec.command}`: permission denied"
    return None


def _http_cause(spec: McpServerSpec, err: BaseException) -> str | None:
    """What went wrong reaching a server over HTTP, when that is what went wrong."""
    import httpx

    url = shown_url(spec.url or "")
    if isinstance(err, httpx.ConnectError):
        return f"connection refused at {url} (is the server running?)"
    if isinstance(err, httpx.HTTPStatusError):
        return f"{url} answered HTTP {err.response.status_code} {err.response.reason_phrase}"
    if isinstance(err, httpx.TimeoutException):
        return f"{url} did not answer in time ({type(err).__name__})"
    return None


def _is_gone(err: BaseException) -> bool:
    """Whether `err` says the server's end of the connection is gone."""
    if isinstance(err, McpError):
        return err.error.code == types.CONNECTION_CLOSED
    return isinstance(err, (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, _Exited))


def _cause(spec: McpServerSpec, exc: BaseException, stderr: str) -> str:
    """What went wrong with the server, named: never 'unhandled errors in a TaskGroup'."""
    leaves = [e for e in _leaves(exc) if not isinstance(e, asyncio.CancelledError)] or [exc]
    err = leaves[0]
    tail = f"; its stderr ends with:\n{stderr}" if stderr else ""
    named = _program_cause(spec, err) or _http_cause(spec, err)
    if named is not None:
        return named
    if isinstance(err, TimeoutError):
        return f"no answer within {spec.timeout_s:g} s (timeout_s){tail}"
    if _is_gone(err):
        return (
            "the server process exited" if spec.command is not None else "the server closed the connection"
        ) + tail
    return f"{type(err).__name__}: {err}{tail}"


class _Exited(Exception):
    """The server's output ended: its process is gone."""


class McpConnection:
    """The conversation's session with one MCP server (see the module's docstring)."""

    def __init__(self, spec: McpServerSpec, notice: Notice | None = None) -> None:
        self.spec = spec
        self._notice = notice
        self._session: ClientSession | None = None
        self._owner: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._ended = asyncio.Event()
        """Set as soon as the server is known to be gone, before its transport has been taken down."""
        self._lock = asyncio.Lock()
        self._death: BaseException | None = None
        self._restarts = 0
        self._errlog: Any = None
        self._log_sinks: list[LogSink] = []
        self.tools: dict[str, types.Tool] = {}
        """The server's tools by name, as it listed them when the session opened."""

    @property
    def name(self) -> str:
        return self.spec.name

    def _stderr_tail(self) -> str:
        f = self._errlog
        if f is None or f.closed:
            return ""
        with contextlib.suppress(OSError, ValueError):
            f.flush()
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - STDERR_TAIL * 4))
            return f.read()[-STDERR_TAIL:].strip()
        return ""

    def _fail(self, exc: BaseException, what: str = ":") -> McpCallError:
        return McpCallError(f"MCP server '{self.name}'{what} {_cause(self.spec, exc, self._stderr_tail())}")

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        data = params.data
        line = data if isinstance(data, str) else repr(data)
        if params.logger:
            line = f"{params.logger}: {line}"
        # A log line names no request: it goes to the latest running call, the one the server is most likely busy with.
        for sink in list(self._log_sinks[-1:]):
            sink(str(params.level), line[:2000])

    async def _transport(self, stack: contextlib.AsyncExitStack) -> tuple[Any, Any]:
        spec = self.spec
        if spec.command is not None:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            if self._errlog is None or self._errlog.closed:
                # Open past the session's end: a dead server's stderr is quoted after its transport is gone.
                self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
            params = StdioServerParameters(command=spec.command, args=spec.args, env=spec.env or None)
            return await stack.enter_async_context(stdio_client(params, errlog=self._errlog))
        import httpx
        from mcp.client.streamable_http import streamable_http_client

        # The read time-out covers a server that holds a response stream open while a tool works.
        timeout = httpx.Timeout(min(spec.timeout_s, 30.0), read=max(spec.timeout_s + 30.0, 300.0))
        client = await stack.enter_async_context(
            httpx.AsyncClient(headers=resolve_headers(spec), timeout=timeout)
        )
        read, write, _ = await stack.enter_async_context(
            streamable_http_client(spec.url or "", http_client=client)
        )
        return read, write

    async def _own(self, ready: asyncio.Future[None]) -> None:
        """The owner task: open the transport and the session, hold them until closed or the server is gone."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await self._transport(stack)
                # Forward the server's messages, so its end (the process exited) is seen at once.
                forward, mine = anyio.create_memory_object_stream[Any](0)
                ended = self._ended

                async def pump() -> None:
                    async with forward:
                        async for item in read:
                            await forward.send(item)
                    ended.set()

                group = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(group.cancel_scope.cancel)
                group.start_soon(pump)
                session = await stack.enter_async_context(
                    ClientSession(
                        mine,
                        write,
                        read_timeout_seconds=timedelta(seconds=self.spec.timeout_s),
                        logging_callback=self._on_log,
                    )
                )
                await session.initialize()
                listed = await session.list_tools()
                self.tools = {t.name: t for t in listed.tools}
                self._session = session
                ready.set_result(None)
                closing = asyncio.ensure_future(self._closing.wait())
                gone = asyncio.ensure_future(ended.wait())
                try:
                    await asyncio.wait({closing, gone}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closing.cancel()
                    gone.cancel()
                if not self._closing.is_set():
                    raise _Exited()
        except BaseException as exc:
            self._death = exc
            if isinstance(exc, asyncio.CancelledError):
                ready.cancel()
                raise
            if not ready.done():
                ready.set_exception(exc)
        finally:
            self._session = None

    async def _open(self) -> None:
        if self.spec.url is not None:
            resolve_headers(self.spec)  # a missing variable is the user's to fix: say so before connecting
        self._closing = asyncio.Event()
        self._ended = asyncio.Event()
        self._death = None
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._owner = asyncio.get_running_loop().create_task(self._own(ready), name=f"parley-mcp-{self.name}")
        try:
            async with asyncio.timeout(self.spec.timeout_s):
                await asyncio.shield(ready)
        except BaseException as exc:
            error = self._fail(
                TimeoutError() if isinstance(exc, TimeoutError) else exc, " could not be reached:"
            )
            await self._stop()
            self._owner = None  # it never ran: the next use starts it afresh, not as a restart
            if ready.done() and not ready.cancelled():
                ready.exception()  # reported above, by its cause: not "never retrieved"
            raise error from None

    async def session(self) -> ClientSession:
        """The open session: started on first use, started again (once) if the server died since."""
        async with self._lock:
            if (
                self._session is not None
                and self._owner is not None
                and not self._owner.done()
                and not self._ended.is_set()
            ):
                return self._session
            if self._owner is not None:  # it ran before, and died
                cause = _cause(self.spec, self._death or _Exited(), self._stderr_tail())
                if self._restarts >= 1:
                    raise McpCallError(
                        f"MCP server '{self.name}' stopped again ({cause}); parley restarts a server "
                        "only once per conversation"
                    )
                self._restarts += 1
                if self._notice is not None:
                    self._notice(
                        f"MCP server '{self.name}' stopped ({cause.splitlines()[0]}); starting it again "
                        "(what it kept in memory is lost)"
                    )
                await self._stop()
            await self._open()
            assert self._session is not None
            return self._session

    def _start(
        self,
        session: ClientSession,
        tool: str,
        arguments: dict[str, Any],
        progress: Progress | None,
    ) -> tuple[asyncio.Future[types.CallToolResult], float]:
        """The call under way, and how long to wait for it: for a plain call the library's own time-out comes
        first; a tool that must run as a task has its polls, which have none of their own."""
        info = self.tools.get(tool)
        timeout = timedelta(seconds=self.spec.timeout_s)
        if info is not None and info.execution is not None and info.execution.taskSupport == "required":
            return asyncio.ensure_future(self._as_task(session, tool, arguments)), self.spec.timeout_s
        work = session.call_tool(tool, arguments, read_timeout_seconds=timeout, progress_callback=progress)
        return asyncio.ensure_future(work), self.spec.timeout_s + 1

    def _refused(self, tool: str, exc: McpError) -> McpCallError:
        if exc.error.code == 408:  # the library's own time-out (HTTP's Request Timeout code)
            return self._timed_out(tool)
        if exc.error.code == types.CONNECTION_CLOSED:
            self._ended.set()
            return self._fail(exc)
        return McpCallError(
            f"MCP server '{self.name}' refused the call to {tool}: {exc.error.message} "
            f"(error {exc.error.code})"
        )

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        progress: Progress | None = None,
        log: LogSink | None = None,
    ) -> types.CallToolResult:
        """Call one tool within the server's `timeout_s`; failures raise McpCallError naming the cause."""
        session = await self.session()
        owner = self._owner
        assert owner is not None
        if log is not None:
            self._log_sinks.append(log)
        work, wait_s = self._start(session, tool, arguments, progress)
        try:
            async with asyncio.timeout(wait_s):
                done, _ = await asyncio.wait({work, owner}, return_when=asyncio.FIRST_COMPLETED)
            if work not in done:
                raise self._fail(self._death or _Exited())
            return work.result()
        except McpError as exc:
            raise self._refused(tool, exc) from None
        except TimeoutError:
            raise self._timed_out(tool) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            self._ended.set()
            raise self._fail(exc) from None
        finally:
            if not work.done():
                work.cancel()
            if log is not None:
                self._log_sinks.remove(log)

    def _timed_out(self, tool: str) -> McpCallError:
        t = self.spec.timeout_s
        return McpCallError(
            f"MCP server '{self.name}': {tool} timed out after {t:g} s (the server's timeout_s is "
            f"{t:g}); the call was abandoned"
        )

    async def _as_task(
        self, session: ClientSession, tool: str, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        """A tool that must run as a task (MCP tasks): start it, poll it to its end, fetch its result."""
        ttl = int(self.spec.timeout_s * 1000)
        created = await session.experimental.call_tool_as_task(tool, arguments, ttl=ttl)
        task_id = created.task.taskId
        status = created.task.status
        try:
            async for state in session.experimental.poll_task(task_id):
                status = state.status
        except asyncio.CancelledError:  # timed out or stopped: ask the server to stop working on it
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await asyncio.shield(session.experimental.cancel_task(task_id))
            raise
        if status != "completed":
            raise McpCallError(f"MCP server '{self.name}': the task running {tool} ended {status}")
        return await session.experimental.get_task_result(task_id, types.CallToolResult)

    async def _stop(self) -> None:
        owner = self._owner
        self._closing.set()
        if owner is not None and not owner.done():
            try:
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await asyncio.shield(owner)
            except TimeoutError:
                owner.cancel()
                with contextlib.suppress(BaseException):
                    await owner
            except BaseException:
                pass
        self._session = None

    async def close(self) -> None:
        """End the session (a stdio server's process exits)."""
        await self._stop()
        self._owner = None
        if self._errlog is not None:
            with contextlib.suppress(OSError):
                self._errlog.close()


class McpHub:
    """The MCP sessions of one conversation and its sub-teams: one per declared server."""

    def __init__(self, notice: Notice | None = None) -> None:
        self._notice = notice
        self._connections: dict[str, McpConnection] = {}

    def connection(self, spec: McpServerSpec) -> McpConnection:
        # Keyed by the whole declaration: a sub-team's server of the same name but another command is another server.
        key = spec.model_dump_json()
        conn = self._connections.get(key)
        if conn is None:
            conn = self._connections[key] = McpConnection(spec, self._notice)
        return conn

    async def close(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            await conn.close()
