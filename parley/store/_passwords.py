"""Password hashing with scrypt and a per-user random salt."""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["MIN_PASSWORD", "hash_password", "verify_password"]

MIN_PASSWORD = 8
# OWASP's scrypt minimum (N=2**17 would need maxmem raised and ~0.3 s a login).
_N, _R, _P, _DKLEN = 2**14, 8, 1, 64
_MAXMEM = 64 * 1024 * 1024


def _derive(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=_MAXMEM)


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$key` (hex): the parameters travel with the hash."""
    salt = secrets.token_bytes(16)
    key = _derive(password, salt, _N, _R, _P, _DKLEN)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${key.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """True if `password` matches `stored`. With no stored hash, still spends the time,
    so response time does not tell which user names exist."""
    if stored is None:
        _derive(password, b"\0" * 16, _N, _R, _P, _DKLEN)
        return False
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(key)
        got = _derive(password, bytes.fromhex(salt), int(n), int(r), int(p), len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)
