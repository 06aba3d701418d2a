"""What a browser's connection claims, checked before Chainlit uses it: the ids its socket brings (of the server's
own form, or refused) and the login its token holds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, get_args

from chainlit.session import ClientType

from ..paths import is_server_id

__all__ = ["CLIENT_TYPES", "LOGIN_STAMP", "Login", "foreign_ids"]

CLIENT_TYPES = frozenset(get_args(ClientType))
LOGIN_STAMP = "login_stamp"
"""The key of a password login's stamp in its user's metadata (see `Login`)."""


@dataclass(frozen=True)
class Login:
    """What a login token says: who, and the stamp of that user's logins when it was made."""

    name: str
    """The user's identifier."""
    stamp: str | None
    """The user's login stamp then: "" in a token made before stamps existed (or by local mode), None when the
    token a socket connected with can no longer be read. It holds while the store has the same one."""


def foreign_ids(auth: Any) -> str | None:
    """Why a socket's `auth` must be refused (a reason the page can show), or None if it is of the server's form."""
    if not isinstance(auth, dict):
        return "the connection carries no session details: reload the page"
    session_id = auth.get("sessionId")
    if not is_server_id(session_id):
        return f"session id {str(session_id)[:80]!r} is not of this server's form (a UUID): reload the page"
    thread_id = auth.get("threadId")
    if thread_id not in (None, "") and not is_server_id(thread_id):
        return f"thread id {str(thread_id)[:80]!r} is not of this server's form (a UUID): open the chat from its start page"
    if auth.get("clientType") not in CLIENT_TYPES:
        return f"client type {str(auth.get('clientType'))[:40]!r} is not one of {', '.join(sorted(CLIENT_TYPES))}"
    for key in ("chatProfile", "userEnv"):
        if auth.get(key) is not None and not isinstance(auth.get(key), str):
            return f"{key} must be text"
    user_env = auth.get("userEnv")
    if user_env:
        try:
            if not isinstance(json.loads(user_env), dict):
                raise ValueError
        except (ValueError, RecursionError):
            return "userEnv must be a JSON object"
    return None
