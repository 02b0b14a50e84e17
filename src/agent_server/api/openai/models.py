"""`GET /v1/models`: the agent, and the agent pinned to each chain model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path

from agent_server.api.deps import AppResources, Principal
from agent_server.api.openai.schemas import AGENT_MODEL, PINNED_PREFIX
from agent_server.errors import ModelNotFound
from agent_server.resources import Resources

router = APIRouter(prefix="/v1", tags=["openai"], include_in_schema=False)
CREATED = 1_764_633_600
"""A fixed `created` (2025-12-02): the ids are configuration, not objects with a birth."""


def model_ids(resources: Resources) -> list[str]:
    """`agent` (the whole chain), and `agent:<id>` per chain model when there are several."""
    specs = resources.deps.models.specs
    pinned = [f"{PINNED_PREFIX}{spec.id}" for spec in specs] if len(specs) > 1 else []
    return [AGENT_MODEL, *pinned]


def pinned_model(resources: Resources, requested: str) -> str | None:
    """The chain model a requested id pins first (None for `agent`); 404 if unknown."""
    if requested not in model_ids(resources):
        raise ModelNotFound(requested)
    return requested.removeprefix(PINNED_PREFIX) if requested != AGENT_MODEL else None


def model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "agent-server"}


@router.get("/models")
async def list_models(resources: AppResources, _principal: Principal) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in model_ids(resources)]}


@router.get("/models/{model_id:path}")
async def get_model(
    resources: AppResources, _principal: Principal, model_id: str = Path()
) -> dict[str, Any]:
    pinned_model(resources, model_id)
    return model_object(model_id)
