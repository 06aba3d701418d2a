"""fetch_url: private addresses refused at every hop, pages returned as readable text, sizes capped."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from parley.tools import ToolRegistry

ROOT = Path(__file__).resolve().parent.parent
PAGE = b"""<!doctype html><html><head><title>  Quarterly   report </title>
<style>body { color: red }</style><script>alert("tracking")</script></head>
<body><h1>Results</h1><p>EMEA grew <b>85%</b>&nbsp;in Q3.</p><noscript>enable js</noscript>
<ul><li>First</li><li>Second</li></ul></body></html>"""
BIG = b"line of text\n" * 250_000  # about 3.2 MB: over the 2 MB download cap


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, content_type: str, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        routes: dict[str, Callable[[], None]] = {
            "/": lambda: self._send(200, "text/html; charset=utf-8", PAGE),
            "/to-self": lambda: self._send(302, "text/plain", b"", Location=f"http://127.0.0.1:{port}/"),
            "/to-metadata": lambda: self._send(
                302, "text/plain", b"", Location="http://169.254.169.254/latest/"
            ),
            "/loop": lambda: self._send(302, "text/plain", b"", Location="/loop"),
            "/big": lambda: self._send(200, "text/plain", BIG),
            "/data.json": lambda: self._send(200, "application/json", b'{"a": [1, 2]}'),
            "/host": lambda: self._send(200, "text/plain", f"Host: {self.headers['Host']}".encode()),
            "/image.png": lambda: self._send(200, "image/png", b"\x89PNG\r\n\x1a\n" + bytes(500)),
        }
        routes.get(self.path, lambda: self._send(404, "text/plain", b"no such page"))()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def fetch() -> Callable[..., str]:
    registry = ToolRegistry.discover([ROOT / "tools"])
    assert registry.errors == []
    tooldef = registry.get("fetch_url")
    assert tooldef.family == "web" and not tooldef.approval
    return tooldef.func


@pytest.fixture
def allow(monkeypatch: pytest.MonkeyPatch, port: int) -> int:
    monkeypatch.setenv("PARLEY_FETCH_ALLOW_HOSTS", f"127.0.0.1:{port}")
    return port


def test_private_and_non_http_addresses_are_refused(fetch: Callable[..., str], port: int) -> None:
    cases = {
        f"http://127.0.0.1:{port}/": "127.0.0.1 is a loopback address",
        "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is a link-local address",
        "http://[::1]/": "::1 is a loopback address",
        "http://[::ffff:127.0.0.1]/": "127.0.0.1 is a loopback address",
        "http://localhost/": "loopback address",
        "http://10.1.2.3/": "10.1.2.3 is a private address",
        "http://0.0.0.0/": "0.0.0.0 is an unspecified address",
        "http://2130706433/": "127.0.0.1 is a loopback address",  # 127.0.0.1 written as a number
        "file:///etc/passwd": "only http and https",
        "ftp://x": "only http and https",
    }
    for url, reason in cases.items():
        out = fetch(url)
        assert out.startswith("Refused:") and reason in out, (url, out)


def test_an_allowed_host_gives_readable_text(fetch: Callable[..., str], allow: int) -> None:
    out = fetch(f"http://127.0.0.1:{allow}/")
    assert out.startswith("Title: Quarterly report\nURL: http://127.0.0.1:")
    assert "Results" in out and "EMEA grew 85% in Q3." in out and "First\n" in out
    for leftover in ("<", "alert", "color: red", "enable js"):
        assert leftover not in out
    assert fetch(f"http://127.0.0.1:{allow}/data.json").endswith('{"a": [1, 2]}')
    # The allow-list names exact hosts: other ports and names stay refused.
    assert fetch("http://127.0.0.1:1/").startswith("Refused:")
    assert fetch(f"http://localhost:{allow}/").startswith("Refused:")


def test_redirects_are_checked_at_every_hop(fetch: Callable[..., str], allow: int) -> None:
    assert "Title: Quarterly report" in fetch(f"http://127.0.0.1:{allow}/to-self")
    out = fetch(f"http://127.0.0.1:{allow}/to-metadata")
    assert out.startswith("Refused: redirect to http://169.254.169.254/latest/: ")
    assert "link-local" in out
    assert fetch(f"http://127.0.0.1:{allow}/loop") == "Error: more than 5 redirects"
    assert fetch(f"http://127.0.0.1:{allow}/missing").startswith("Error: HTTP 404")


def test_sizes_are_capped_and_binary_is_refused(fetch: Callable[..., str], allow: int) -> None:
    out = fetch(f"http://127.0.0.1:{allow}/big", max_chars=1000)
    assert out.count("line of text") < 100
    assert "more characters not shown" in out and "download stopped at 2 MB" in out
    assert fetch(f"http://127.0.0.1:{allow}/image.png").startswith("Refused: image/png is not text")


def test_the_connection_goes_to_the_vetted_address(
    fetch: Callable[..., str], port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host is resolved once per hop; http.client connects to that address, never resolving again."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def fake(host: str, *args: object, **kwargs: object) -> object:
        lookups.append(host)
        return real("127.0.0.1" if host == "rebind.test" else host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    monkeypatch.setenv("PARLEY_FETCH_ALLOW_HOSTS", f"rebind.test:{port}")
    out = fetch(f"http://rebind.test:{port}/host")
    assert out.endswith(f"Host: rebind.test:{port}")
    assert lookups == ["rebind.test", "127.0.0.1"]  # the second is create_connection on the vetted IP itself


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` and its key, as PEM files."""
    pytest.importorskip("cryptography")
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_https_goes_to_the_vetted_address_and_checks_the_certificate_of_the_host(
    fetch: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over TLS too the connection goes to the vetted IP, while SNI and the certificate check use the host name."""
    import ssl

    cert, key = _certificate(tmp_path, "secure.test")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    real = socket.getaddrinfo

    def fake(host: str, *args: object, **kwargs: object) -> object:
        return real("127.0.0.1" if host.endswith(".test") else host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    monkeypatch.setenv("PARLEY_FETCH_ALLOW_HOSTS", f"secure.test:{port},other.test:{port}")
    try:
        untrusted = fetch(f"https://secure.test:{port}/host")
        assert untrusted.startswith("Error: could not fetch") and "CERTIFICATE_VERIFY_FAILED" in untrusted
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust it (ssl's default context reads this)
        assert fetch(f"https://secure.test:{port}/host").endswith(f"Host: secure.test:{port}")
        wrong = fetch(
            f"https://other.test:{port}/host"
        )  # the same server, but not the name on its certificate
        assert wrong.startswith("Error: could not fetch") and "CERTIFICATE_VERIFY_FAILED" in wrong
    finally:
        server.shutdown()
        server.server_close()
