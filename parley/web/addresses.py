"""Addresses: which hosts are this machine, and a Host header's parts. Imports nothing of Chainlit: `parley ui`
checks its --host with these before it starts the server."""

from __future__ import annotations

import ipaddress

__all__ = ["host_only", "loopback", "split_host"]


def loopback(host: str) -> bool:
    """True for a loopback address or `localhost`. An empty host means every interface, so it is not."""
    host = host.strip().strip("[]").split("%")[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(host_header: str) -> tuple[str, str]:
    """'127.0.0.1:8000' -> ('127.0.0.1', '8000'), '[::1]:8000' -> ('::1', '8000'), 'example.com' -> (.., '')."""
    if host_header.startswith("["):
        host, _, rest = host_header[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if host_header.count(":") == 1:
        host, port = host_header.split(":")
        return host, port
    return host_header, ""


def host_only(host_header: str) -> str:
    """The host a Host header names, without its port."""
    return split_host(host_header)[0]
