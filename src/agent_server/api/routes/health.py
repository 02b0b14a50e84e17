"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from agent_server.api.deps import AppResources
from agent_server.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving; says nothing about its dependencies."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(resources: AppResources) -> JSONResponse:
    """Ready when the transcript database answers, each check bounded in time."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(resources.transcript.ping(), CHECK_TIMEOUT_SECONDS)
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not ready", with its kind named
        checks["database"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
