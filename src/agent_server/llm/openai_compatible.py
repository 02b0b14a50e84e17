"""Chat models for any OpenAI-compatible endpoint (OpenRouter by default)."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from agent_server.config import Settings


def make_openai_compatible_model(model_id: str, settings: Settings) -> BaseChatModel:
    """One upstream model. Retries are ours (the fallback chain), not the SDK's:
    the SDK's silent retries would hide failures the chain must classify."""
    assert settings.openrouter_api_key is not None
    return ChatOpenAI(
        model=model_id,
        api_key=settings.openrouter_api_key,
        base_url=settings.openrouter_base_url,
        timeout=settings.model_timeout_seconds,
        max_retries=0,
        streaming=False,
        stream_usage=True,
    )
