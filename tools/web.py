"""Fetch a web page as readable text, for users who are online, without reaching private networks.

Every hop (the URL and each redirect, at most `MAX_REDIRECTS`) is checked: http or https only; the
host is resolved once and each address must be public (no private, loopback, link-local such as the
cloud metadata address 169.254.169.254, multicast, reserved, unspecified or shared addresses, IPv4 or
IPv6, including IPv4 embedded in IPv6). The connection goes to that vetted address, while the Host
header and TLS name (SNI and certificate check) stay the original host name, so a second DNS answer
cannot redirect it (DNS rebinding). Downloads stop at `MAX_BYTES`; the whole fetch at `TIME_LIMIT_S`.

`PARLEY_FETCH_ALLOW_HOSTS` (comma-separated `host` or `host:port`, e.g. `127.0.0.1:8765`) lets those
exact hosts through even when private: for tests and local development only.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from html.parser import HTMLParser
from typing import Annotated
from urllib.parse import urljoin, urlsplit

from parley.tools import tool

MAX_BYTES = 2 * 1024 * 1024
TIME_LIMIT_S = 15.0
MAX_REDIRECTS = 5
MAX_CHARS = 200_000
USER_AGENT = "parley-fetch/0.1"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HTML = ("text/html", "application/xhtml+xml")
_TEXT = ("application/json", "application/xml", "application/javascript", "application/x-ndjson")
_resolver = ThreadPoolExecutor(4, thread_name_prefix="parley-dns")
_workers = ThreadPoolExecutor(8, thread_name_prefix="parley-fetch")


class Refused(Exception):
    """The URL may not be fetched; the message says why."""


class Failed(Exception):
    """The fetch went wrong (HTTP error, too many redirects)."""


def _allowed_hosts() -> set[str]:
    raw = os.environ.get("PARLEY_FETCH_ALLOW_HOSTS", "")
    return {h.strip().lower() for h in raw.split(",") if h.strip()}


def _blocked_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why this address may not be reached, or "" if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = _blocked_reason(embedded)
            if inner:
                return f"{inner} (inside the IPv6 address {ip})"
    for attr, what in (
        ("is_unspecified", "an unspecified"),
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_multicast", "a multicast"),
        ("is_private", "a private"),
        ("is_reserved", "a reserved"),
    ):
        if getattr(ip, attr):
            return f"{ip} is {what} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return ""


def _resolve(host: str, port: int, deadline: float) -> list[str]:
    future = _resolver.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=max(deadline - time.monotonic(), 0.1))
    except FutureTimeout as exc:
        raise Failed(f"looking up {host} took too long") from exc
    except (OSError, UnicodeError) as exc:
        raise Failed(f"cannot resolve {host}: {exc}") from exc
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = str(sockaddr[0]).split("%", 1)[0]
        if ip not in addresses:
            addresses.append(ip)
    return addresses


def _parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an http or https URL; Refused for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"{url!r} is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused(f"only http and https URLs can be fetched, not {scheme or 'this'}: {url}")
    host = (parts.hostname or "").lower()
    if not host:
        raise Refused(f"{url!r} has no host name")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, host, port or (443 if scheme == "https" else 80), target


def _exempt(host: str, port: int) -> bool:
    """Whether PARLEY_FETCH_ALLOW_HOSTS lets this host (or host and port) be reached whatever its address."""
    allowed = _allowed_hosts()
    return host in allowed or f"{host}:{port}" in allowed or f"[{host}]:{port}" in allowed


def _vet(url: str, deadline: float) -> tuple[str, str, int, str, str]:
    """Check one hop. Returns (scheme, host, port, vetted IP, request target)."""
    scheme, host, port, target = _parse(url)
    exempt = _exempt(host, port)
    addresses = _resolve(host, port, deadline)
    for address in addresses:
        try:
            reason = _blocked_reason(ipaddress.ip_address(address))
        except ValueError:
            reason = f"{address} is not an IP address"
        if reason and not exempt:
            raise Refused(f"{host} resolves to {reason}: private networks cannot be fetched")
    if not addresses:
        raise Refused(f"{host} has no address")
    return scheme, host, port, addresses[0], target


class _Pinned(http.client.HTTPConnection):
    """An HTTP connection to a vetted address that still names its host: never resolved again."""

    def __init__(self, host: str, port: int, ip: str, session: _Session) -> None:
        super().__init__(host, port, timeout=session.left())
        self.ip = ip
        self.session = session

    def connect(self) -> None:
        self.sock = self.session.open(self.ip, self.port)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(_Pinned):
    """The same over TLS: SNI and the certificate check use the host name, not the address."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, ip: str, session: _Session, context: ssl.SSLContext) -> None:
        super().__init__(host, port, ip, session)
        self.context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)


class _Session:
    """One fetch: its deadline, and the socket in use, which the caller shuts down when time is up."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.sock: socket.socket | None = None

    def left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def connection(self, scheme: str, host: str, port: int, ip: str) -> http.client.HTTPConnection:
        """A connection to the vetted `ip` that still says `host` (Host header, SNI, certificate check)."""
        if scheme == "https":
            return _PinnedHTTPS(host, port, ip, self, ssl.create_default_context())
        return _Pinned(host, port, ip, self)

    def open(self, ip: str, port: int) -> socket.socket:
        """The connected socket of this fetch (TLS, if any, is wrapped around it afterwards: see `use`)."""
        self.sock = socket.create_connection((ip, port), self.left())
        return self.sock

    def use(self, conn: http.client.HTTPConnection) -> None:
        sock = conn.sock
        if sock is not None:
            self.sock = sock
            sock.settimeout(self.left())

    def read(self, resp: http.client.HTTPResponse) -> tuple[bytes, bool]:
        """The body, up to MAX_BYTES; and whether it was cut (size or time)."""
        chunks: list[bytes] = []
        size = 0
        while size < MAX_BYTES:
            try:
                if self.sock is not None and self.sock.fileno() != -1:
                    self.sock.settimeout(self.left())
                chunk = resp.read(min(65536, MAX_BYTES - size))
            except TimeoutError:
                return b"".join(chunks), True
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), True

    def abort(self) -> None:
        if self.sock is not None and self.sock.fileno() != -1:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


class _Text(HTMLParser):
    """Readable text of an HTML page: no scripts, styles or tags; blocks on their own lines."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
    BLOCK = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "ul",
            "ol",
            "tr",
            "table",
            "section",
            "article",
            "header",
            "footer",
            "nav",
            "aside",
            "main",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "pre",
            "blockquote",
            "hr",
            "form",
            "dd",
            "dt",
            "dl",
            "figure",
            "figcaption",
            "td",
            "th",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP:
            self._skip = max(self._skip - 1, 0)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)

    def text(self) -> str:
        lines = (re.sub(r"[ \t\r\f\v\xa0]+", " ", line).strip() for line in "".join(self.parts).split("\n"))
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _html_text(markup: str) -> tuple[str, str]:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return " ".join(parser.title.split()), parser.text()


def _fetch(url: str, session: _Session) -> tuple[str, str, bytes, bool]:
    """Follow redirects, vetting each hop. Returns (final URL, content type, body, cut)."""
    for hop in range(MAX_REDIRECTS + 1):
        try:
            scheme, host, port, ip, target = _vet(url, session.deadline)
        except Refused as exc:
            raise Refused(f"redirect to {url}: {exc}" if hop else str(exc)) from None
        conn = session.connection(scheme, host, port, ip)
        try:
            conn.request(
                "GET", target, headers={"User-Agent": USER_AGENT, "Accept": "text/html, text/*, */*;q=0.5"}
            )
            session.use(conn)
            resp = conn.getresponse()
            location = resp.getheader("Location")
            if resp.status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location.strip())
                continue
            if resp.status >= 400:
                raise Failed(f"HTTP {resp.status} {resp.reason} from {url}")
            body, cut = session.read(resp)
            return url, resp.getheader("Content-Type") or "", body, cut
        finally:
            conn.close()
    raise Failed(f"more than {MAX_REDIRECTS} redirects")


def _charset(content_type: str) -> str:
    match = re.search(r"charset=[\"']?([\w.:-]+)", content_type, re.I)
    return match.group(1) if match else "utf-8"


@tool(family="web")
def fetch_url(
    url: Annotated[str, "An http or https address, e.g. 'https://example.com/page'"],
    max_chars: Annotated[int, "At most this many characters of text are returned"] = 20000,
) -> str:
    """Fetch a public web page (or text/JSON document) and return its readable text, with the page title."""
    max_chars = min(max(int(max_chars), 100), MAX_CHARS)
    fetched = _download(url)
    if isinstance(fetched, str):
        return fetched
    final, content_type, body, cut = fetched
    mime = content_type.split(";", 1)[0].strip().lower()
    if not mime:
        mime = "application/octet-stream" if b"\0" in body[:1024] else "text/plain"
    is_text = mime.startswith("text/") or mime in _TEXT or mime.endswith(("+json", "+xml"))
    if mime not in _HTML and not is_text:
        return f"Refused: {mime} is not text ({final})."
    return _readable(final, mime, _decode(body, content_type), cut, max_chars)


def _download(url: str) -> tuple[str, str, bytes, bool] | str:
    """(final URL, content type, body, whether it was cut), or what the model is told instead."""
    session = _Session(time.monotonic() + TIME_LIMIT_S)
    future = _workers.submit(_fetch, url.strip(), session)
    try:
        return future.result(timeout=TIME_LIMIT_S + 1)
    except Refused as exc:
        return f"Refused: {exc}"
    except Failed as exc:
        return f"Error: {exc}"
    except (TimeoutError, FutureTimeout):
        session.abort()
        return f"Error: {url} did not answer within {TIME_LIMIT_S:g} s."
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"Error: could not fetch {url}: {type(exc).__name__}: {exc}"


def _decode(body: bytes, content_type: str) -> str:
    try:
        return body.decode(_charset(content_type), errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _readable(final: str, mime: str, decoded: str, cut: bool, max_chars: int) -> str:
    """The text shown to the model: title and URL, the text (HTML made readable), and what was left out."""
    head = [f"URL: {final}"]
    if mime in _HTML:
        title, decoded = _html_text(decoded)
        if title:
            head.insert(0, f"Title: {title}")
    notes = []
    if cut:
        notes.append(
            f"… download stopped at {MAX_BYTES // (1024 * 1024)} MB or {TIME_LIMIT_S:g} s: the rest is not shown"
        )
    if len(decoded) > max_chars:
        notes.insert(0, f"… {len(decoded) - max_chars:,} more characters not shown")
        decoded = decoded[:max_chars]
    return "\n".join([*head, "", decoded.rstrip(), *notes])
