"""Chat models: upstream providers, the offline model, and the fallback chain."""

from __future__ import annotations

from agent_server.config import OFFLINE_MODEL_ID, Settings
from agent_server.llm.fallback import ChainEntry, ModelCall, ModelChain
from agent_server.llm.offline import OfflineChatModel
from agent_server.llm.openai_compatible import make_openai_compatible_model
from agent_server.llm.registry import KNOWN_MODELS, ModelSpec, specs_for


def build_model_chain(settings: Settings) -> ModelChain:
    """The configured chain; with no API key, the offline model alone."""
    offline = ChainEntry(KNOWN_MODELS[OFFLINE_MODEL_ID], OfflineChatModel())
    if settings.offline_only:
        return ModelChain([offline], offline)
    entries = [
        ChainEntry(spec, make_openai_compatible_model(spec.id, settings))
        for spec in specs_for(settings.agent_models)
    ]
    return ModelChain(entries, offline)


__all__ = ["ModelCall", "ModelChain", "ModelSpec", "OfflineChatModel", "build_model_chain"]
