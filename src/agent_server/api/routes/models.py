"""The configured model chain, in fallback order."""

from __future__ import annotations

from fastapi import APIRouter

from agent_server.api.deps import AppResources
from agent_server.api.schemas import ModelList, ModelOut

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/models", response_model=ModelList)
async def list_models(resources: AppResources) -> ModelList:
    specs = resources.deps.models.specs
    return ModelList(
        models=[
            ModelOut(
                id=spec.id,
                supports_tools=spec.supports_tools,
                context_window=spec.context_window,
                input_price_per_mtok=spec.input_price_per_mtok,
                output_price_per_mtok=spec.output_price_per_mtok,
                default=index == 0,
            )
            for index, spec in enumerate(specs)
        ],
        offline_only=resources.settings.offline_only,
    )
