"""Sign-in attempts are rate-limited: a few failures per user name and per client address a minute.

Chainlit's login route gives the password callback neither the request nor a way to answer
anything but "wrong details", so the limit sits in front of it, as ASGI middleware on POST /login.
Nothing secret is kept: user names only as digests (people type passwords into the name field),
addresses as they are, and only in memory, for one window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["PAGE_KEY", "REFUSAL", "TOO_MANY", "LoginLimiter", "LoginRateLimit"]

log = logging.getLogger("parley.web")

TOO_MANY = "tooManyAttempts"
"""The refusal's `detail`, for programs."""
REFUSAL = "Too many failed sign-ins for this user or from this address: wait a minute, then try again."
PAGE_KEY = "too many requests"
"""Chainlit's login page shows the translation `auth.login.errors.<the HTTP status text, lower-cased>`."""
MAX_BODY = 64 * 1024
"""A login form is a name and a password; anything bigger is not one."""


class LoginLimiter:
    """Counts sign-in failures per user name and per address over a sliding window.

    An attempt counts as a failure from the moment it starts (so a burst of parallel guesses
    cannot slip past the count) until it turns out to have succeeded.
    """

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_address: int = 10,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def begin(self, user: str, address: str) -> float:
        """0 if the attempt may go ahead (it is counted now), otherwise the seconds to wait before trying again."""
        now = self._clock()
        keys = ((_user_key(user), self.per_user), (_address_key(address), self.per_address))
        wait = max(self._wait(key, limit, now) for key, limit in keys)
        if wait > 0:
            return wait
        for key, _ in keys:
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > self._max_keys:
            self._prune(now)
        return 0.0

    def succeeded(self, user: str, address: str) -> None:
        """The attempt was right: the user's failures are forgiven; the address keeps its earlier ones."""
        self._failures.pop(_user_key(user), None)
        self._drop_last(_address_key(address))

    def void(self, user: str, address: str) -> None:
        """The attempt never checked a password (a malformed request): it does not count."""
        self._drop_last(_user_key(user))
        self._drop_last(_address_key(address))

    def _wait(self, key: str, limit: int, now: float) -> float:
        stamps = self._failures.get(key)
        if not stamps:
            return 0.0
        while stamps and stamps[0] <= now - self.window_s:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return 0.0
        return stamps[0] + self.window_s - now if len(stamps) >= limit else 0.0

    def _drop_last(self, key: str) -> None:
        stamps = self._failures.get(key)
        if stamps:
            stamps.pop()
            if not stamps:
                del self._failures[key]

    def _prune(self, now: float) -> None:
        """Forget keys whose failures are all out of the window; past the cap, the longest quiet ones."""
        for key in [k for k, s in self._failures.items() if s[-1] <= now - self.window_s]:
            del self._failures[key]
        if len(self._failures) > self._max_keys:  # leave room, so the next attempts do not sort again
            quiet = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for key in quiet[: len(self._failures) - self._max_keys * 9 // 10]:
                del self._failures[key]


def _user_key(user: str) -> str:
    return "u:" + hashlib.sha256(user.strip().casefold().encode("utf-8", "replace")).hexdigest()


def _address_key(address: str) -> str:
    return "a:" + address


class LoginRateLimit:
    """ASGI middleware: POST `path` goes through `limiter`; a refused attempt is HTTP 429 and never
    reaches the password check."""

    def __init__(self, app: ASGIApp, limiter: LoginLimiter, path: str = "/login") -> None:
        self.app = app
        self.limiter = limiter
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            await _answer(send, 413, {"detail": "the sign-in form is too large"})
            return
        user = await _username(scope, body)
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        wait = self.limiter.begin(user, address)
        if wait > 0:
            log.warning(
                "sign-in refused for %s: too many failed attempts (retry in %d s)", address, math.ceil(wait)
            )
            await _answer(
                send,
                429,
                {"detail": TOO_MANY, "message": REFUSAL},
                [(b"retry-after", str(math.ceil(wait)).encode())],
            )
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, _replay(body, receive), watch)
        finally:
            if status == 200:
                self.limiter.succeeded(user, address)
            elif status != 401:  # not a wrong password: a malformed form, or the server failed
                self.limiter.void(user, address)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _username(scope: Scope, body: bytes) -> str:
    request = Request(scope, _replay(body, _nothing_more))
    try:
        form = await request.form()
    except Exception:  # not a form: Chainlit answers it with 422, and the limiter voids it
        return ""
    try:
        value = form.get("username")
        return value if isinstance(value, str) else ""
    finally:
        await form.close()


async def _nothing_more() -> Message:
    return {"type": "http.disconnect"}


async def _answer(
    send: Send, status: int, content: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
