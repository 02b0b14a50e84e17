"""Calls the ordered chain of models until one answers.

Why not LangChain's `with_fallbacks`: it retries on any exception without telling
us which model answered, which failed and why; it cannot stop at once on an auth
error, skip models that are cooling down or whose window is too small, honour
Retry-After, answer in degraded mode when every provider is rate-limited, or tell
a streaming client to drop a partial answer. Those decisions are the product, so
they live here. The rules (DESIGN.md "Models and fallback"):

| class                | next step                                            |
|----------------------|------------------------------------------------------|
| rate_limit           | cool the model down (Retry-After), try the next      |
| server_error, timeout, connection, malformed_reply, invalid_tool_call,      |
| content_policy       | next model; repeated failures cool the model down    |
| context_too_long     | next model with a larger context window              |
| auth                 | stop: 502 upstream_auth (no other model will help)   |
| bad_request          | stop: 502 upstream_bad_request (our request is wrong)|
| all rate-limited / cooling → offline model, `degraded: true`                |
| all failed otherwise → 503 upstream_unavailable with the per-model reasons  |
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import add_ai_message_chunks
from langchain_core.messages.utils import message_chunk_to_message
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from agent_server.config import OFFLINE_MODEL_ID
from agent_server.errors import UpstreamAuthError, UpstreamBadRequest, UpstreamUnavailable
from agent_server.llm.cooldowns import Cooldowns, InMemoryCooldowns
from agent_server.llm.errors import RATE_LIMITED, Failure, Reason, UpstreamReplyError, classify
from agent_server.llm.registry import ModelSpec
from agent_server.observability.metrics import Metrics

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]
CHARS_PER_TOKEN = 4
"""Rough prompt-size estimate used only to skip models whose window is clearly too small."""
BOUND_CACHE_SIZE = 64
"""(model, tool set) pairs whose `bind_tools` result is kept: runs may name any subset."""
ChatRunnable = Runnable[LanguageModelInput, BaseMessage]


@dataclass(frozen=True, slots=True)
class ChainEntry:
    spec: ModelSpec
    model: BaseChatModel


@dataclass(frozen=True, slots=True)
class ChainPolicy:
    default_cooldown_seconds: float = 30.0
    failure_threshold: int = 3
    failure_cooldown_seconds: float = 30.0
    attempt_timeout_seconds: float = 60.0


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


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    return sum(len(str(m.content)) for m in messages) // CHARS_PER_TOKEN


class ModelChain:
    """The configured models in order, plus the offline model for degraded mode."""

    def __init__(
        self,
        entries: Sequence[ChainEntry],
        offline: ChainEntry,
        *,
        cooldowns: Cooldowns | None = None,
        policy: ChainPolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if not entries:
            raise ValueError("the model chain needs at least one model")
        self._entries = list(entries)
        self._offline = offline
        self._cooldowns = cooldowns or InMemoryCooldowns()
        self._policy = policy or ChainPolicy()
        self._metrics = metrics or Metrics()
        self._bound: OrderedDict[tuple[int, tuple[int, ...]], _Bound] = OrderedDict()

    @property
    def specs(self) -> list[ModelSpec]:
        return [entry.spec for entry in self._entries]

    @property
    def cooldowns(self) -> Cooldowns:
        return self._cooldowns

    def has(self, model_id: str) -> bool:
        return any(entry.spec.id == model_id for entry in self._entries)

    def _order(self, preferred: str | None) -> list[ChainEntry]:
        if preferred is None:
            return list(self._entries)
        first = [e for e in self._entries if e.spec.id == preferred]
        return first + [e for e in self._entries if e.spec.id != preferred]

    def _runnable(self, entry: ChainEntry, tools: Sequence[BaseTool]) -> ChatRunnable:
        """`entry.model` with `tools` bound, cached: binding converts every tool to its
        OpenAI schema again (~0.2 ms per call with the three built-in tools)."""
        if not tools:
            return entry.model
        key = (id(entry.model), tuple(id(tool) for tool in tools))
        if (cached := self._bound.get(key)) is not None:
            self._bound.move_to_end(key)
            return cached.runnable
        runnable = entry.model.bind_tools(list(tools))
        # The entry keeps the model and tools alive, so their ids stay theirs.
        self._bound[key] = _Bound(entry.model, tuple(tools), runnable)
        if len(self._bound) > BOUND_CACHE_SIZE:
            self._bound.popitem(last=False)
        return runnable

    async def ainvoke(
        self,
        messages: Sequence[BaseMessage],
        *,
        tools: Sequence[BaseTool],
        preferred: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stream: bool = False,
        deadline: float | None = None,
        emit: EventSink | None = None,
    ) -> ModelCall:
        """Try each model in order. `deadline` is an epoch time the whole turn must
        finish by; each attempt gets the smaller of its own timeout and what is left."""
        emit = emit or (lambda _event: None)
        order = self._order(preferred)
        # The built-in offline model has no provider to cool down: skipping it saves
        # two Redis round trips per model call in offline mode.
        tracked = [e.spec.id for e in order if e.spec.id != OFFLINE_MODEL_ID]
        cooling = await self._cooldowns.cooling(tracked) if tracked else {}
        prompt_tokens = estimate_tokens(messages)
        fallbacks: list[dict[str, str]] = []
        min_window = 0

        def skip(index: int, reason: Reason) -> None:
            model = order[index].spec.id
            fallbacks.append({"model": model, "reason": reason.value})
            self._metrics.fallbacks.labels(reason.value).inc()
            following = order[index + 1].spec.id if index + 1 < len(order) else None
            emit({"event": "fallback", "from": model, "to": following, "reason": reason.value})

        for index, entry in enumerate(order):
            spec = entry.spec
            if spec.id in cooling:
                skip(index, Reason.COOLING_DOWN)
                continue
            if tools and not spec.supports_tools:
                skip(index, Reason.NO_TOOL_SUPPORT)
                continue
            if spec.context_window <= min_window or spec.context_window < prompt_tokens:
                skip(index, Reason.CONTEXT_TOO_LONG)
                continue
            timeout = self._policy.attempt_timeout_seconds
            if deadline is not None:
                timeout = min(timeout, deadline - time.time())
                if timeout <= 0:
                    skip(index, Reason.DEADLINE)
                    break
            streamed_text = False

            def saw_text() -> None:
                nonlocal streamed_text
                streamed_text = True

            try:
                async with asyncio.timeout(timeout):
                    message = await _call(
                        self._runnable(entry, tools),
                        messages,
                        temperature,
                        max_tokens,
                        stream,
                        saw_text,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = classify(exc)
                self._metrics.model_calls.labels(spec.id, failure.reason.value).inc()
                log.warning(
                    "model %s failed: %s (%s)", spec.id, failure.reason.value, type(exc).__name__
                )
                if streamed_text:
                    emit({"event": "reset", "model": spec.id, "reason": failure.reason.value})
                await self._after_failure(spec.id, failure)
                if failure.reason is Reason.AUTH:
                    raise UpstreamAuthError(
                        "the model provider rejected our credentials", details={"model": spec.id}
                    ) from exc
                if failure.reason is Reason.BAD_REQUEST:
                    raise UpstreamBadRequest(
                        "the model provider rejected the request as invalid",
                        details={"model": spec.id},
                    ) from exc
                if failure.reason is Reason.CONTEXT_TOO_LONG:
                    min_window = max(min_window, spec.context_window)
                skip(index, failure.reason)
                continue
            if spec.id != OFFLINE_MODEL_ID:
                await self._cooldowns.record_success(spec.id)
            return self._observe(_result(spec, message, fallbacks, degraded=False))

        # Models skipped only for lacking tool support were never candidates.
        failures = [f for f in fallbacks if f["reason"] != Reason.NO_TOOL_SUPPORT]
        if failures and all(f["reason"] in RATE_LIMITED for f in failures):
            message = await _call(
                self._runnable(self._offline, tools),
                messages,
                temperature,
                max_tokens,
                stream,
                lambda: None,
            )
            return self._observe(_result(self._offline.spec, message, fallbacks, degraded=True))
        raise UpstreamUnavailable("every configured model failed", details={"models": fallbacks})

    def _observe(self, call: ModelCall) -> ModelCall:
        m = self._metrics
        m.model_calls.labels(call.model_used, "success").inc()
        m.tokens.labels(call.model_used, "input").inc(call.input_tokens)
        m.tokens.labels(call.model_used, "output").inc(call.output_tokens)
        m.cost.labels(call.model_used).inc(call.cost_usd)
        return call

    async def _after_failure(self, model: str, failure: Failure) -> None:
        if failure.reason is Reason.RATE_LIMIT:
            seconds = failure.retry_after or self._policy.default_cooldown_seconds
            await self._cooldowns.cool(model, seconds)
            return
        if failure.reason in (Reason.AUTH, Reason.BAD_REQUEST, Reason.CONTEXT_TOO_LONG):
            return  # says nothing about the model's health
        failures = await self._cooldowns.record_failure(model)
        if failures >= self._policy.failure_threshold:
            await self._cooldowns.cool(model, self._policy.failure_cooldown_seconds)


@dataclass(frozen=True, slots=True)
class _Bound:
    model: BaseChatModel
    tools: tuple[BaseTool, ...]
    runnable: ChatRunnable


async def _call(
    runnable: ChatRunnable,
    messages: Sequence[BaseMessage],
    temperature: float | None,
    max_tokens: int | None,
    stream: bool,
    on_text: Callable[[], None],
) -> AIMessage:
    kwargs: dict[str, Any] = {}
    if temperature is not None:
        kwargs["temperature"] = temperature
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    if stream:
        message = await _streamed(runnable, messages, kwargs, on_text)
    else:
        message = await runnable.ainvoke(list(messages), **kwargs)
    if not isinstance(message, AIMessage):
        raise UpstreamReplyError(Reason.MALFORMED, f"model returned {type(message).__name__}")
    _check_reply(message)
    return message


async def _streamed(
    runnable: ChatRunnable,
    messages: Sequence[BaseMessage],
    kwargs: dict[str, Any],
    on_text: Callable[[], None],
) -> BaseMessage:
    """Tokens reach the client through LangGraph's "messages" stream (callbacks); we
    only keep the chunks and merge them once at the end: `aggregate + chunk` per
    token re-merges the growing message every time (159 -> 146 µs per token)."""
    chunks: list[Any] = []
    async for chunk in runnable.astream(list(messages), **kwargs):
        if chunk.content:
            on_text()
        chunks.append(chunk)
    if not chunks:
        raise UpstreamReplyError(Reason.MALFORMED, "the stream ended without a message")
    if len(chunks) == 1:  # also a model without streaming support: one whole message
        return message_chunk_to_message(chunks[0])
    return message_chunk_to_message(add_ai_message_chunks(chunks[0], *chunks[1:]))


def _check_reply(message: AIMessage) -> None:
    if message.invalid_tool_calls and not message.tool_calls:
        raise UpstreamReplyError(Reason.INVALID_TOOL_CALL, "tool call arguments are not valid JSON")
    if message.response_metadata.get("finish_reason") == "content_filter":
        raise UpstreamReplyError(
            Reason.CONTENT_POLICY, "the reply was withheld by a content filter"
        )
    if not message.tool_calls and not str(message.content).strip():
        raise UpstreamReplyError(Reason.MALFORMED, "the reply is empty")


def _result(
    spec: ModelSpec, message: AIMessage, fallbacks: list[dict[str, str]], *, degraded: bool
) -> ModelCall:
    usage = message.usage_metadata or {}
    input_tokens = int(usage.get("input_tokens", 0))
    output_tokens = int(usage.get("output_tokens", 0))
    metadata = message.response_metadata
    reported = metadata.get("cost_usd")
    if reported is None:
        reported = (metadata.get("token_usage") or {}).get("cost")
    cost = float(reported) if reported is not None else spec.cost(input_tokens, output_tokens)
    return ModelCall(
        message=message,
        model_used=str(metadata.get("model_name") or spec.id),
        fallbacks=list(fallbacks),
        degraded=degraded,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
    )
