"""What we know about each model: tool support, context window, price.

The bundled table covers the default chain; unknown ids get conservative
defaults (tools on, 32k window, free) so a newly configured model works before
anyone writes it down here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from agent_server.config import OFFLINE_MODEL_ID


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    supports_tools: bool = True
    context_window: int = 32_768
    input_price_per_mtok: float = 0.0
    """USD per million input tokens."""
    output_price_per_mtok: float = 0.0
    """USD per million output tokens."""

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.input_price_per_mtok + output_tokens * self.output_price_per_mtok
        ) / 1_000_000


KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(OFFLINE_MODEL_ID, supports_tools=True, context_window=1_000_000),
        ModelSpec("deepseek/deepseek-chat-v3-0324:free", context_window=163_840),
        ModelSpec("google/gemini-2.0-flash-exp:free", context_window=1_048_576),
        ModelSpec("qwen/qwen3-235b-a22b-07-25:free", context_window=262_144),
        ModelSpec(
            "openai/gpt-4o-mini",
            context_window=128_000,
            input_price_per_mtok=0.15,
            output_price_per_mtok=0.60,
        ),
    )
}


def specs_for(
    model_ids: Iterable[str], overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> list[ModelSpec]:
    """Specs of the chain: the bundled table, then `MODEL_SPECS` overrides on top."""
    overrides = overrides or {}
    specs = []
    for model_id in model_ids:
        spec = KNOWN_MODELS.get(model_id, ModelSpec(model_id))
        if model_id in overrides:
            spec = replace(spec, **dict(overrides[model_id]))
        specs.append(spec)
    return specs
