"""One JSON error shape for every failure: `{"error": {"code", "message", "request_id"}}`.

FastAPI's defaults answer validation errors with `{"detail": [...]}` and
unhandled exceptions with plain text; clients would need three parsers. These
handlers give them one, and never put a stack trace on the wire.

Two HTTP details are fixed here because every such response passes through:
a 405's `Allow` names the methods of every route on the path (not just the
first one Starlette tried), and a body that cannot be parsed at all (bad JSON,
invalid UTF-8, nesting deep enough for a `RecursionError`) from a caller without
a valid key is a 401, not a 400 (FastAPI parses the body before auth runs); with
a key it is 400 `malformed_json`, counted against the rate limit like any other
request on a rate-limited route.
"""

from __future__ import annotations

import logging
from typing import Any

from asgi_correlation_id import correlation_id
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from agent_server.errors import AgentServerError, StoreUnavailable
from agent_server.persistence.db import is_sql_outage

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": correlation_id.get()}
    if details is not None:
        body["details"] = jsonable_encoder(details)
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentServerError)
    return error_response(
        exc.status_code, exc.code, exc.message, details=exc.details, headers=exc.headers
    )


async def _auth_refusal(request: Request) -> JSONResponse | None:
    """The answer auth would give this request, or None when the caller may proceed.

    FastAPI parses (and rejects) a JSON body before it runs the route's
    dependencies, so without this an unauthenticated caller learns "malformed
    JSON" instead of "401". Every failure is turned into a response here: an
    exception escaping an exception handler skips the other handlers and ends
    as a 500 (an `Unauthorized` would never become its 401).
    """
    auth = getattr(request.app.state, "auth", None)
    if auth is None:  # app not started (no lifespan): nothing to ask
        return None
    try:
        principal = await auth.principal(request)
        request.state.principal = principal  # for the access log
        if _rate_limited_route(request):
            await request.app.state.limiter.hit(principal)
    except AgentServerError as exc:
        return await _domain_error(request, exc)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        return await _store_down(request, exc)
    except Exception as exc:
        return await _unhandled(request, exc)
    return None


def _rate_limited_route(request: Request) -> bool:
    from agent_server.api.deps import rate_limit  # deps imports the service layer

    route = request.scope.get("route")
    return any(
        getattr(d, "dependency", None) is rate_limit for d in getattr(route, "dependencies", ())
    )


async def _malformed_body(request: Request) -> JSONResponse:
    refusal = await _auth_refusal(request)
    if refusal is not None:
        return refusal
    return error_response(400, "malformed_json", "request body is not valid JSON")


def _is_body_parse_error(exc: StarletteHTTPException) -> bool:
    """FastAPI's 400 for a body it could not decode (its cause: UnicodeDecodeError,
    RecursionError, …); JSON syntax errors arrive as `json_invalid` instead."""
    return exc.status_code == 400 and exc.__cause__ is not None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    if any(e["type"] == "json_invalid" for e in errors):
        return await _malformed_body(request)
    summary = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors
    )
    return error_response(422, "validation_error", summary or "invalid request", details=errors)


def allowed_methods(request: Request) -> set[str]:
    """Methods of every route whose path matches the request's, plus HEAD with GET.

    Starlette raises 405 from the first route whose path matched, so its `Allow`
    names only that route's methods even when, say, GET and DELETE of one path
    live on two routes. HEAD is served for every GET by `HeadAsGetMiddleware`.
    Since FastAPI 0.165 `app.router.routes` holds included routers as single
    entries; `iter_route_contexts` flattens them into their routes (full paths).
    """
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        route_methods = route.methods
        if not route_methods:
            continue
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(route_methods)
    if "GET" in methods:
        methods.add("HEAD")
    return methods


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if _is_body_parse_error(exc):
        return await _malformed_body(request)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        try:
            methods = allowed_methods(request)
        except Exception:  # never fail the error reply; keep the router's own Allow
            log.exception("could not compute Allow for %s", request.url.path)
            methods = set()
        if methods:
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
            headers["Allow"] = ", ".join(sorted(methods))
    return error_response(exc.status_code, code, message, headers=headers or None)


async def _store_down(_: Request, exc: Exception) -> JSONResponse:
    log.warning("state store unreachable: %s", type(exc).__name__)
    return error_response(
        503,
        "store_unavailable",
        "the state store is unreachable; retry shortly",
        headers=dict(StoreUnavailable.headers or {}),
    )


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    """SQLAlchemy, asyncpg and aiosqlite connection failures (`is_sql_outage`): the
    same 503 as a Redis outage, logged as one warning line, not a stack trace."""
    log.warning(
        "database unreachable on %s %s: %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        str(exc).splitlines()[0][:200] if str(exc) else "",
    )
    return error_response(
        503,
        "store_unavailable",
        "the database is unreachable; retry shortly",
        headers=dict(StoreUnavailable.headers or {}),
    )


async def _maybe_database_down(request: Request, exc: Exception) -> JSONResponse:
    """Registered for the exception classes a database outage raises, so that it is
    answered here (Starlette re-raises whatever reaches the catch-all `Exception`
    handler, and uvicorn then logs it with a traceback); the rest of those classes
    is a 500 like any unexpected error."""
    if is_sql_outage(exc):
        return await _database_down(request, exc)
    return await _unhandled(request, exc)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    if is_sql_outage(exc):
        return await _database_down(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AgentServerError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RedisConnectionError, _store_down)
    app.add_exception_handler(RedisTimeoutError, _store_down)
    for sql_error in (sa_exc.DBAPIError, sa_exc.TimeoutError, OSError):
        app.add_exception_handler(sql_error, _maybe_database_down)
    app.add_exception_handler(Exception, _unhandled)
