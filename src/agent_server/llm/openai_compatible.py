"""Chat models for any OpenAI-compatible endpoint (OpenRouter by default)."""

from __future__ import annotations

from typing import Any

from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI

from agent_server.config import Settings


class OpenAICompatibleChat(ChatOpenAI):
    """`ChatOpenAI` that keeps the provider-reported cost of streamed replies.

    langchain-openai turns the final `usage` chunk into `usage_metadata` and drops
    the rest; OpenRouter puts the billed cost in `usage.cost`. Non-streamed
    replies keep it in `response_metadata["token_usage"]` already.
    """

    def _convert_chunk_to_generation_chunk(
        self,
        chunk: dict[str, Any],
        default_chunk_class: type,
        base_generation_info: dict[str, Any] | None,
    ) -> ChatGenerationChunk | None:
        generation = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        cost = (chunk.get("usage") or {}).get("cost")
        if generation is not None and cost is not None:
            generation.message.response_metadata["cost_usd"] = float(cost)
        return generation


def make_openai_compatible_model(
    model_id: str, settings: Settings, *, fallback_ids: list[str] | None = None
) -> ChatOpenAI:
    """One upstream model. Retries are ours (the fallback chain), not the SDK's:
    the SDK's silent retries would hide failures the chain must classify.

    With `OPENROUTER_SERVER_FALLBACK` on, the request also carries OpenRouter's
    `models` list (this model, then the rest of the chain) so OpenRouter can fail
    over server-side first; `OPENROUTER_PROVIDER` is sent as `provider`.
    """
    assert settings.openrouter_api_key is not None
    extra_body: dict[str, Any] = {}
    if settings.openrouter_server_fallback:
        extra_body["models"] = [model_id, *(fallback_ids or [])]
    if settings.openrouter_provider:
        extra_body["provider"] = settings.openrouter_provider
    return OpenAICompatibleChat(
        model=model_id,
        api_key=settings.openrouter_api_key,
        base_url=settings.openrouter_base_url,
        timeout=settings.model_timeout_seconds,
        max_retries=0,
        stream_usage=True,
        extra_body=extra_body or None,
        default_headers={"X-Title": "agent-server"},
    )
