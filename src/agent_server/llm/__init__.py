"""Chat models: upstream providers, the offline model, and the fallback chain."""

from __future__ import annotations

import logging

import openai

from agent_server.config import OFFLINE_MODEL_ID, Settings
from agent_server.llm.cooldowns import Cooldowns
from agent_server.llm.fallback import ChainEntry, ChainPolicy, ModelCall, ModelChain
from agent_server.llm.models_file import ModelsConfig, from_settings
from agent_server.llm.offline import OfflineChatModel
from agent_server.llm.openai_compatible import make_openai_compatible_model
from agent_server.llm.registry import KNOWN_MODELS, ModelSpec
from agent_server.observability.metrics import Metrics

log = logging.getLogger(__name__)


def build_model_chain(
    settings: Settings,
    *,
    cooldowns: Cooldowns | None = None,
    metrics: Metrics | None = None,
    models: ModelsConfig | None = None,
) -> ModelChain:
    """The configured chain (models file, else the `OPENROUTER_*` shorthand); entries of
    a provider whose key variable is unset are left out, and with none left (no key at
    all) the offline model answers alone."""
    offline = ChainEntry(KNOWN_MODELS[OFFLINE_MODEL_ID], OfflineChatModel())
    policy = ChainPolicy(
        default_cooldown_seconds=settings.cooldown_seconds,
        failure_threshold=settings.failure_threshold,
        failure_cooldown_seconds=settings.failure_cooldown_seconds,
        attempt_timeout_seconds=settings.model_timeout_seconds,
        model_unavailable_cooldown_seconds=settings.model_unavailable_cooldown_seconds,
    )
    config = models or from_settings(settings)
    usable = [item for item in config.chain if item.provider.usable]
    for name in sorted({i.provider.name for i in config.chain if not i.provider.usable}):
        if config.source != "environment":
            env = config.providers[name].api_key_env
            log.warning("provider %s skipped: %s is not set", name, env)
    if not usable:
        return ModelChain([offline], offline, cooldowns=cooldowns, policy=policy, metrics=metrics)
    # One HTTP client per chain, not langchain-openai's process-wide cached one: that
    # one is bound to the event loop that first used it, so a second app in the same
    # process (replicas in a test, Studio beside the server) got "Event loop is closed".
    # The SDK's default client settings (connection limits, redirects) are kept.
    http = openai.DefaultAsyncHttpxClient(timeout=settings.model_timeout_seconds)
    entries = []
    for index, item in enumerate(usable):
        same_provider_later = [
            later.spec.id for later in usable[index + 1 :] if later.provider is item.provider
        ]
        model = make_openai_compatible_model(
            item.spec.id,
            settings,
            provider=item.provider,
            fallback_ids=same_provider_later,
            http_async_client=http,
        )
        entries.append(ChainEntry(item.spec, model, provider=item.provider.name))
    return ModelChain(
        entries, offline, cooldowns=cooldowns, policy=policy, metrics=metrics, http_client=http
    )


__all__ = [
    "ChainEntry",
    "ChainPolicy",
    "ModelCall",
    "ModelChain",
    "ModelSpec",
    "OfflineChatModel",
    "build_model_chain",
]
