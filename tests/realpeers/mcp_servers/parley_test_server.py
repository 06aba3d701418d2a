"""An MCP server for parley's tests, on the `mcp` package's FastMCP: `python parley_test_server.py stdio`
or `python parley_test_server.py http PORT` (streamable HTTP at /mcp)."""

from __future__ import annotations

import asyncio
import io
import os
import sys

from mcp.server.fastmcp import Context, FastMCP, Image
from mcp.types import EmbeddedResource, TextResourceContents

app = FastMCP("parley-test")
_counts: dict[int, int] = {}


@app.tool()
def count(ctx: Context) -> str:
    """Count the calls made in this session: 1, 2, 3..."""
    key = id(ctx.session)
    _counts[key] = _counts.get(key, 0) + 1
    return str(_counts[key])


@app.tool()
async def slow(seconds: float) -> str:
    """Wait this many seconds, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds:g} s"


@app.tool()
def picture(width: int, height: int) -> Image:
    """A PNG picture of the given size."""
    from PIL import Image as Pil

    out = io.BytesIO()
    Pil.new("RGB", (width, height), (200, 40, 40)).save(out, format="PNG")
    return Image(data=out.getvalue(), format="png")


@app.tool()
def big(chars: int) -> str:
    """A text of this many characters."""
    return ("0123456789" * (chars // 10 + 1))[:chars]


@app.tool()
async def steps(n: int, ctx: Context) -> str:
    """Report progress through n steps."""
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"step {i} of {n}")
    return f"{n} steps done"


@app.tool()
async def chatty(message: str, ctx: Context) -> str:
    """Log a line at level warning, then answer."""
    await ctx.warning(message)
    return "logged"


@app.tool()
def document() -> list[object]:
    """A text and an embedded resource."""
    return [
        "here it is",
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(
                uri="memo://notes/1", mimeType="text/plain", text="the memo's text"
            ),
        ),
    ]


@app.tool()
def whoami(ctx: Context) -> str:
    """Whether the request carried the expected Authorization header (HTTP only)."""
    request = ctx.request_context.request
    got = request.headers.get("authorization") if request is not None else None
    return "authorized" if got and got == os.environ.get("EXPECTED_AUTH") else "not authorized"


@app.tool()
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


@app.tool()
def crash() -> str:
    """Exit the server's process at once."""
    sys.stderr.write("test server: crashing on purpose\n")
    sys.stderr.flush()
    os._exit(3)


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        app.settings.port = int(sys.argv[2])
        app.settings.log_level = "WARNING"
        app.run("streamable-http")
    else:
        app.run()
