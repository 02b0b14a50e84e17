"""Request-scoped dependencies: who is calling, limits, and the services built at start-up."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from agent_server.persistence.documents import DocumentStore
from agent_server.resources import Resources
from agent_server.runs.turns import Turns

MAX_OFFSET = 1_000_000_000
"""Largest pagination `offset`: far past any real list, far below the 64-bit
integers SQLite and PostgreSQL take (2^63 used to escape as a 500)."""
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]

# Declared for the OpenAPI schema (securitySchemes); `Authenticator` reads the headers.
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


async def get_principal(
    request: Request,
    _bearer_key: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    _header_key: Annotated[str | None, Security(_api_key)] = None,
) -> str:
    """The caller's principal id (never the key); 401 when a key is required."""
    principal = await request.app.state.auth.principal(request)
    request.state.principal = principal  # for the access log line
    return principal


Principal = Annotated[str, Depends(get_principal)]


async def rate_limit(request: Request, principal: Principal) -> None:
    """`RATE_LIMIT_PER_MINUTE` per principal on the message routes."""
    await request.app.state.limiter.hit(principal)


# The getters below are `async def` though they never await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop (and its CPU) on every request.
async def get_service(request: Request) -> Turns:
    return request.app.state.service


async def get_resources(request: Request) -> Resources:
    return request.app.state.resources


async def get_documents(request: Request) -> DocumentStore:
    return request.app.state.resources.documents


Service = Annotated[Turns, Depends(get_service)]
Documents = Annotated[DocumentStore, Depends(get_documents)]
AppResources = Annotated[Resources, Depends(get_resources)]
