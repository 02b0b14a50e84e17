"""Chat models: upstream providers, the offline model, and the fallback chain."""

from __future__ import annotations

from agent_server.config import OFFLINE_MODEL_ID, Settings
from agent_server.llm.cooldowns import Cooldowns
from agent_server.llm.fallback import ChainEntry, ChainPolicy, ModelCall, ModelChain
from agent_server.llm.offline import OfflineChatModel
from agent_server.llm.openai_compatible import make_openai_compatible_model
from agent_server.llm.registry import KNOWN_MODELS, ModelSpec, specs_for
from agent_server.observability.metrics import Metrics


def build_model_chain(
    settings: Settings, *, cooldowns: Cooldowns | None = None, metrics: Metrics | None = None
) -> ModelChain:
    """The configured chain; with no API key, the offline model alone."""
    offline = ChainEntry(KNOWN_MODELS[OFFLINE_MODEL_ID], OfflineChatModel())
    policy = ChainPolicy(
        default_cooldown_seconds=settings.cooldown_seconds,
        failure_threshold=settings.failure_threshold,
        failure_cooldown_seconds=settings.failure_cooldown_seconds,
        attempt_timeout_seconds=settings.model_timeout_seconds,
    )
    if settings.offline_only:
        return ModelChain([offline], offline, cooldowns=cooldowns, policy=policy, metrics=metrics)
    specs = specs_for(settings.agent_models, settings.model_specs)
    ids = [spec.id for spec in specs]
    entries = [
        ChainEntry(
            spec,
            make_openai_compatible_model(spec.id, settings, fallback_ids=ids[index + 1 :]),
        )
        for index, spec in enumerate(specs)
    ]
    return ModelChain(entries, offline, cooldowns=cooldowns, policy=policy, metrics=metrics)


__all__ = [
    "ChainEntry",
    "ChainPolicy",
    "ModelCall",
    "ModelChain",
    "ModelSpec",
    "OfflineChatModel",
    "build_model_chain",
]
