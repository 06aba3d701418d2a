"""An MCP server for the browser tests, on the `mcp` package's FastMCP, over stdio: a tool that reports progress
and logs a line, then waits until the test lets it finish (a file appears), and a tool that answers a picture."""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path

from mcp.server.fastmcp import Context, FastMCP, Image
from PIL import Image as Picture

app = FastMCP("crawler")


@app.tool()
async def crawl(pages: int, ctx: Context) -> str:
    """Crawl a site: progress after the first page, a warning, then the rest once the test says so."""
    await ctx.report_progress(1, pages, "page 1: /pricing")
    await ctx.warning("robots.txt disallows /private")
    await asyncio.to_thread(_wait_for, Path(os.environ["CRAWLER_GO_ON"]))
    for page in range(2, pages + 1):
        await ctx.report_progress(page, pages, f"page {page}")
    return f"crawled {pages} pages"


def _wait_for(go_on: Path) -> None:
    """The test looks at the page meanwhile, then creates the file."""
    while not go_on.exists():
        time.sleep(0.05)


@app.tool()
def screenshot() -> Image:
    """A small PNG: a blue page with a red header."""
    picture = Picture.new("RGB", (160, 100), (40, 90, 200))
    picture.paste((220, 40, 40), (0, 0, 160, 24))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return Image(data=out.getvalue(), format="png")


if __name__ == "__main__":
    app.run("stdio")
