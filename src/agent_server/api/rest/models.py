"""The configured model chain, in fallback order, with each entry's live health.

Health comes from the chain's cooldowns (shared through Redis when configured), so
every replica shows what any of them learned: `ok`, or `cooling_down` until when
and why, plus the last failure seen and when.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter

from agent_server.api.deps import AppResources
from agent_server.api.rest.schemas import ModelList, ModelOut

router = APIRouter(prefix="/api", tags=["catalog"])


class ModelHealthOut(ModelOut):
    provider: str | None = None
    status: Literal["ok", "cooling_down"] = "ok"
    until: datetime | None = None
    """When the cooldown (of this model, or of its whole provider) ends."""
    cooldown_reason: str | None = None
    last_failure_reason: str | None = None
    last_failure_at: datetime | None = None


class ModelHealthList(ModelList):
    models: list[ModelHealthOut]  # type: ignore[assignment]


def _when(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


@router.get("/models", response_model=ModelHealthList)
async def list_models(resources: AppResources) -> ModelHealthList:
    chain = resources.deps.models
    return ModelHealthList(
        models=[
            ModelHealthOut(
                id=entry.spec.id,
                supports_tools=entry.spec.supports_tools,
                context_window=entry.spec.context_window,
                input_price_per_mtok=entry.spec.input_price_per_mtok,
                output_price_per_mtok=entry.spec.output_price_per_mtok,
                default=index == 0,
                provider=entry.provider,
                status="cooling_down" if entry.cooling_until else "ok",
                until=_when(entry.cooling_until),
                cooldown_reason=entry.cause,
                last_failure_reason=entry.last_failure_reason,
                last_failure_at=_when(entry.last_failure_at),
            )
            for index, entry in enumerate(await chain.health())
        ],
        offline_only=chain.offline_only,
    )
