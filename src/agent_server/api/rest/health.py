"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from agent_server.api.deps import AppResources
from agent_server.api.rest.schemas import Health, Readiness
from agent_server.observability.metrics import Metrics

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus exposition (all workers' samples in multiprocess mode).

    Behind the same key as /api unless `METRICS_REQUIRE_KEY=false`: route and model
    names, traffic and spend are not for anyone who can reach the port. A separate
    metrics port would be one more listener to bind, secure and document for what
    Prometheus already does with `authorization: {credentials: <key>}`.
    """
    settings = getattr(request.app.state, "settings", None)
    auth = getattr(request.app.state, "auth", None)
    if auth is not None and (settings is None or settings.metrics_require_key):
        request.state.principal = await auth.principal(request)  # for the access log
    collected: Metrics = request.app.state.metrics
    return Response(collected.exposition(), media_type=collected.content_type)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving; says nothing about its dependencies."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(resources: AppResources) -> JSONResponse:
    """Ready when the transcript database (and Redis, when configured) answer,
    each check bounded in time."""
    probes: dict[str, Awaitable[Any]] = {"database": resources.transcript.ping()}
    if resources.redis is not None:
        probes["redis"] = resources.redis.ping()
    results = await asyncio.gather(
        *(asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS) for probe in probes.values()),
        return_exceptions=True,
    )
    # Any failure means "not ready", with its kind named (never its message: no secrets).
    checks = {
        name: "ok" if not isinstance(result, BaseException) else f"error: {type(result).__name__}"
        for name, result in zip(probes, results, strict=True)
    }
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
