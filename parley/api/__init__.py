"""parley's HTTP API, served by the web chat's own server: REST and Server-Sent Events under /api/v1 (with an
OpenAPI document at /api/v1/openapi.json), and an OpenAI-compatible /v1 (`chat/completions`, `models`) where a
model is a team. Every request carries an API token (`parley tokens create USER`); a token sees only its user's
conversations. See docs/api.md."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.routing import Mount

from ._hub import ApiError, ClusterGetter, Hub, StoreGetter
from ._openai import router as openai_router
from ._rest import router as rest_router

__all__ = ["API_PREFIX", "OPENAI_PREFIX", "ApiError", "Hub", "StoreGetter", "api_app", "mount", "openai_app"]

API_PREFIX = "/api/v1"
OPENAI_PREFIX = "/v1"


def _version() -> str:
    from .. import __version__

    return __version__


def api_app(hub: Hub) -> FastAPI:
    """The REST and SSE API (mounted at /api/v1)."""
    app = FastAPI(
        title="parley API",
        version=_version(),
        summary="Drive parley's teams: conversations, messages, decisions, events, audit",
        openapi_url="/openapi.json",
        docs_url=None,  # Swagger UI loads scripts from a CDN, which the web chat's content policy refuses
        redoc_url=None,
    )
    app.state.parley_hub = hub
    app.include_router(rest_router)

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    app.add_exception_handler(ApiError, refused)
    return app


def openai_app(hub: Hub) -> FastAPI:
    """The OpenAI-compatible endpoints (mounted at /v1); errors in OpenAI's shape."""
    app = FastAPI(
        title="parley OpenAI-compatible API",
        version=_version(),
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.parley_hub = hub
    app.include_router(openai_router)

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(
            exc.status, "invalid_request_error" if exc.status < 500 else "api_error"
        )
        error = {"message": exc.detail, "type": kind, "param": None, "code": None}
        headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": error}, status_code=exc.status, headers=headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors: list[dict[str, Any]] = list(exc.errors())
        first = errors[0] if errors else {}
        loc: list[object] = list(first.get("loc", ()))
        where = ".".join(str(p) for p in loc[1:])
        said = str(first.get("msg", "invalid request"))
        message = f"{where}: {said}" if where else said
        error = {"message": message, "type": "invalid_request_error", "param": where or None, "code": None}
        return JSONResponse({"error": error}, status_code=400)

    app.add_exception_handler(ApiError, refused)
    app.add_exception_handler(RequestValidationError, invalid)
    return app


def mount(app: FastAPI, store: StoreGetter, cluster: ClusterGetter | None = None) -> Hub:
    """Serve the API on `app` (the web chat's server), ahead of its other routes: Chainlit's catch-all route for
    its page would otherwise answer every GET. Returns the hub of the API's conversations."""
    hub = Hub(store, cluster=cluster)
    app.router.routes.insert(0, Mount(API_PREFIX, app=api_app(hub)))
    app.router.routes.insert(1, Mount(OPENAI_PREFIX, app=openai_app(hub)))
    return hub
