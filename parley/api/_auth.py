"""Who a request is: the user its `Authorization: Bearer` API token signs in (`parley tokens create`)."""

from __future__ import annotations

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ._hub import ApiError, Hub

__all__ = ["BEARER", "LOCAL", "hub_of", "user_of"]

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token of a parley user: `parley tokens create USER` prints one.",
)
LOCAL = "local"
"""The single-user mode's user: its tokens hold only while no user exists, as its web chat does."""
NO_TOKEN = (
    "no API token: send the header `Authorization: Bearer TOKEN` with a token "
    "`parley tokens create USER` printed"
)
BAD_TOKEN = (
    "this API token is not valid (mistyped, revoked, or its user removed): `parley tokens list` shows the "
    "tokens there are, `parley tokens create USER` makes a new one"
)
LOCAL_ENDED = (
    "this token was made for the single-user mode, which ended when the first user was created: make a token "
    "of a user (`parley tokens create NAME`)"
)


def hub_of(request: Request) -> Hub:
    hub = getattr(request.app.state, "parley_hub", None)
    assert isinstance(hub, Hub), "the API app is made by parley.api (api_app/openai_app)"
    return hub


async def user_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The user the request's token signs in; 401 (with what to do) otherwise."""
    if credentials is None or not credentials.credentials.strip():
        raise ApiError(401, NO_TOKEN)
    store = await hub_of(request).store()
    user = await store.user_of_token(credentials.credentials.strip())
    if user is None:
        raise ApiError(401, BAD_TOKEN)
    if user == LOCAL and await store.count_users() > 0:
        raise ApiError(401, LOCAL_ENDED)
    return user
