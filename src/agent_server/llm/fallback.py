"""Calls the ordered chain of models until one answers.

Why not LangChain's `with_fallbacks`: it retries on any exception without telling
us which model answered, which failed and why, and it cannot stop early on an
auth error or switch to the degraded offline answer when every provider is
rate-limited. Those decisions are the product, so they live here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import BaseTool

from agent_server.errors import UpstreamAuthError, UpstreamUnavailable
from agent_server.llm.registry import ModelSpec

EventSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class ChainEntry:
    spec: ModelSpec
    model: BaseChatModel


@dataclass(frozen=True, slots=True)
class ModelCall:
    """What one model step produced, with its accounting."""

    message: AIMessage
    model_used: str
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    degraded: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


def classify(exc: BaseException) -> str:
    """Map an upstream failure to the error class that decides what happens next."""
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth"
    if isinstance(exc, openai.APITimeoutError | asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.BadRequestError):
        return "bad_request"
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return "server_error"
    return "malformed_reply"


class ModelChain:
    """The configured models in order, plus the offline model for degraded mode."""

    def __init__(self, entries: Sequence[ChainEntry], offline: ChainEntry) -> None:
        if not entries:
            raise ValueError("the model chain needs at least one model")
        self._entries = list(entries)
        self._offline = offline

    @property
    def specs(self) -> list[ModelSpec]:
        return [entry.spec for entry in self._entries]

    def has(self, model_id: str) -> bool:
        return any(entry.spec.id == model_id for entry in self._entries)

    def _order(self, preferred: str | None) -> list[ChainEntry]:
        if preferred is None:
            return list(self._entries)
        first = [e for e in self._entries if e.spec.id == preferred]
        return first + [e for e in self._entries if e.spec.id != preferred]

    async def ainvoke(
        self,
        messages: Sequence[BaseMessage],
        *,
        tools: Sequence[BaseTool],
        preferred: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        emit: EventSink | None = None,
    ) -> ModelCall:
        fallbacks: list[dict[str, str]] = []
        rate_limited_only = True
        for entry in self._order(preferred):
            if tools and not entry.spec.supports_tools:
                fallbacks.append({"model": entry.spec.id, "reason": "no_tool_support"})
                continue
            try:
                message = await self._call(entry, messages, tools, temperature, max_tokens)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = classify(exc)
                if reason == "auth":
                    raise UpstreamAuthError(
                        "the model provider rejected our credentials",
                        details={"model": entry.spec.id},
                    ) from exc
                fallbacks.append({"model": entry.spec.id, "reason": reason})
                rate_limited_only &= reason == "rate_limit"
                if emit is not None:
                    emit({"event": "fallback", "from": entry.spec.id, "reason": reason})
                continue
            return _result(entry.spec, message, fallbacks, degraded=False)

        if rate_limited_only and fallbacks:
            message = await self._call(self._offline, messages, tools, temperature, max_tokens)
            return _result(self._offline.spec, message, fallbacks, degraded=True)
        raise UpstreamUnavailable("every configured model failed", details={"models": fallbacks})

    @staticmethod
    async def _call(
        entry: ChainEntry,
        messages: Sequence[BaseMessage],
        tools: Sequence[BaseTool],
        temperature: float | None,
        max_tokens: int | None,
    ) -> AIMessage:
        runnable: Any = entry.model.bind_tools(list(tools)) if tools else entry.model
        kwargs: dict[str, Any] = {}
        if temperature is not None:
            kwargs["temperature"] = temperature
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        message = await runnable.ainvoke(list(messages), **kwargs)
        if not isinstance(message, AIMessage):
            raise TypeError(f"model returned {type(message).__name__}, not AIMessage")
        return message


def _result(
    spec: ModelSpec, message: AIMessage, fallbacks: list[dict[str, str]], *, degraded: bool
) -> ModelCall:
    usage = message.usage_metadata or {}
    input_tokens = int(usage.get("input_tokens", 0))
    output_tokens = int(usage.get("output_tokens", 0))
    model_used = str(message.response_metadata.get("model_name") or spec.id)
    return ModelCall(
        message=message,
        model_used=model_used,
        fallbacks=fallbacks,
        degraded=degraded,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=spec.cost(input_tokens, output_tokens),
    )
