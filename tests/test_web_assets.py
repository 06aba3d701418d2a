"""The page's files served compressed once (parley/web/_assets.py): what a browser gets, and what goes on to
Chainlit unchanged. Through httpx, a real HTTP client, against the middleware in front of a stand-in for Chainlit."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.types import Receive, Scope, Send

from parley.web._assets import CompressedAssets

SCRIPT = b"console.log('parley');\n" * 2000


async def chainlit(scope: Scope, receive: Receive, send: Send) -> None:
    """What Chainlit would answer: marked, so the test sees the request went on to it."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-answered-by", b"chainlit")]})
    await send({"type": "http.response.body", "body": b"chainlit"})


def client(folder: Path) -> httpx.AsyncClient:
    app = CompressedAssets(chainlit, folder=folder)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def test_a_built_script_is_sent_compressed_and_kept_by_the_browser(tmp_path: Path) -> None:
    (tmp_path / "index-B2u6IBgX.js").write_bytes(SCRIPT)
    async with client(tmp_path) as http:
        got = await http.get("/assets/index-B2u6IBgX.js", headers={"accept-encoding": "gzip, deflate, br"})
        assert got.status_code == 200 and got.content == SCRIPT  # httpx undoes the gzip, as a browser does
        assert (
            got.headers["content-encoding"] == "gzip"
            and int(got.headers["content-length"]) < len(SCRIPT) / 10
        )
        assert got.headers["content-type"].startswith(("application/javascript", "text/javascript"))
        assert got.headers["cache-control"] == "public, max-age=31536000, immutable"  # a hashed name
        again = await http.get(
            "/assets/index-B2u6IBgX.js",
            headers={"accept-encoding": "gzip", "if-none-match": got.headers["etag"]},
        )
        assert again.status_code == 304 and again.content == b""
        head = await http.head("/assets/index-B2u6IBgX.js", headers={"accept-encoding": "gzip"})
        assert head.status_code == 200 and head.headers["content-length"] == got.headers["content-length"]
        assert head.content == b""


async def test_an_unhashed_file_is_checked_each_time_and_anything_else_goes_on_to_chainlit(
    tmp_path: Path,
) -> None:
    (tmp_path / "logo.svg").write_text("<svg/>" * 100)
    (tmp_path / "index-B2u6IBgX.js").write_bytes(SCRIPT)
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "secret.js").write_text("nope")
    async with client(tmp_path) as http:
        logo = await http.get("/assets/logo.svg", headers={"accept-encoding": "gzip"})
        assert logo.headers["cache-control"] == "no-cache" and logo.text == "<svg/>" * 100
        for path, encoding in [
            ("/assets/index-B2u6IBgX.js", "identity"),  # a client that takes no gzip
            ("/assets/index-B2u6IBgX.js", "gzip;q=0"),
            ("/assets/index-B2u6IBgX.js", "*;q=1, gzip;q=0"),
            ("/assets/inner%2fsecret.js", "gzip"),  # not a file of the folder itself
            ("/assets/..%2f..%2fetc%2fpasswd", "gzip"),  # out of it: Chainlit refuses it
            ("/assets/missing-12345678.js", "gzip"),
            ("/assets/index-B2u6IBgX%00.js", "gzip"),
            ("/assets/picture.png", "gzip"),  # not worth compressing
            ("/login", "gzip"),
        ]:
            got = await http.get(path, headers={"accept-encoding": encoding})
            assert got.headers.get("x-answered-by") == "chainlit", (path, encoding)
        posted = await http.post("/assets/index-B2u6IBgX.js", headers={"accept-encoding": "gzip"})
        assert posted.headers.get("x-answered-by") == "chainlit"


async def test_chainlits_own_page_script_is_served_from_its_build() -> None:
    """The default folder is Chainlit's build: its page script (hashed name) comes compressed. Fails loudly if
    Chainlit moves its build or stops naming its scripts by their content."""
    from chainlit.server import build_dir

    scripts = sorted((Path(build_dir) / "assets").glob("index-*.js"))
    assert scripts, f"Chainlit's page script is no longer in {build_dir}/assets"
    app = CompressedAssets(chainlit)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
        got = await http.get(f"/assets/{scripts[0].name}", headers={"accept-encoding": "gzip"})
    assert got.headers["content-encoding"] == "gzip" and got.content == scripts[0].read_bytes()
    assert "immutable" in got.headers["cache-control"]
