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
| payment_required     | next model; repeated failures cool the model down    |
| model_unavailable    | cool the model down for long, next model             |
| content_policy, unsupported_request | next model (says nothing of its health) |
| context_too_long     | next model with a larger context window              |
| auth                 | cool the whole provider, skip its models, next       |
| connection refused   | cool the whole provider, skip its models, next       |
| bad_request          | stop: 502 upstream_bad_request (our request is wrong)|
| all rate-limited / cooling → offline model, `degraded: true`                |
| all rejected (auth only → 502 upstream_auth; else 502 upstream_rejected)    |
| all failed otherwise → 503 upstream_unavailable with the per-model reasons  |

Cooldown keys are `provider:model` per chain entry and `provider` for a whole
provider (entries built without a provider use the bare model id, and an auth
failure of one stops the turn, as when there was only one provider).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import add_ai_message_chunks
from langchain_core.messages.utils import message_chunk_to_message
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from agent_server.config import OFFLINE_MODEL_ID
from agent_server.errors import (
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamRejected,
    UpstreamUnavailable,
)
from agent_server.llm.cooldowns import Cooldowns, InMemoryCooldowns
from agent_server.llm.errors import (
    REJECTED,
    Failure,
    Reason,
    UpstreamReplyError,
    classify,
)
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
    provider: str | None = None
    """The provider's name in the models file (None: built directly, e.g. in tests)."""

    @property
    def key(self) -> str:
        """This entry's cooldown key."""
        return f"{self.provider}:{self.spec.id}" if self.provider else self.spec.id


@dataclass(frozen=True, slots=True)
class ChainPolicy:
    default_cooldown_seconds: float = 30.0
    failure_threshold: int = 3
    failure_cooldown_seconds: float = 30.0
    attempt_timeout_seconds: float = 60.0
    model_unavailable_cooldown_seconds: float = 600.0
    """A model its provider does not serve, and a provider that rejected our key."""


@dataclass(frozen=True, slots=True)
class EntryHealth:
    """One chain entry as `GET /api/models` shows it."""

    provider: str | None
    spec: ModelSpec
    cooling_until: float | None
    """Epoch time the entry (or its whole provider) is skipped until; None = ok."""
    cause: str | None
    last_failure_reason: str | None
    last_failure_at: float | None


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
    provider: str | None = None
    """The provider that answered (`offline` for the built-in model)."""


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
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        """`http_client`: the upstream models' client, closed by `aclose()`."""
        if not entries:
            raise ValueError("the model chain needs at least one model")
        self._entries = list(entries)
        self._offline = offline
        self._cooldowns = cooldowns or InMemoryCooldowns()
        self._policy = policy or ChainPolicy()
        self._metrics = metrics or Metrics()
        self._bound: OrderedDict[tuple[int, tuple[int, ...]], _Bound] = OrderedDict()
        self._several_providers = len({e.provider for e in self._entries}) > 1
        self._http = http_client

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    @property
    def specs(self) -> list[ModelSpec]:
        return [entry.spec for entry in self._entries]

    @property
    def entries(self) -> list[ChainEntry]:
        return list(self._entries)

    @property
    def offline_only(self) -> bool:
        return [e.spec.id for e in self._entries] == [OFFLINE_MODEL_ID]

    async def health(self) -> list[EntryHealth]:
        """Each entry's cooldown (its own or its provider's) and last failure, fresh."""
        tracked = [e for e in self._entries if e.spec.id != OFFLINE_MODEL_ID]
        keys = [e.key for e in tracked] + sorted({e.provider for e in tracked if e.provider})
        known = await self._cooldowns.health(keys)
        result = []
        for entry in self._entries:
            own = known.get(entry.key)
            shared = known.get(entry.provider) if entry.provider else None
            states = [h for h in (own, shared) if h is not None]
            cooling = max(states, key=lambda h: h.until, default=None)
            last = max(
                (h for h in states if h.last_at is not None),
                key=lambda h: h.last_at or 0.0,
                default=None,
            )
            result.append(
                EntryHealth(
                    provider=entry.provider,
                    spec=entry.spec,
                    cooling_until=cooling.until if cooling and cooling.until else None,
                    cause=cooling.cause or None if cooling and cooling.until else None,
                    last_failure_reason=last.last_reason if last else None,
                    last_failure_at=last.last_at if last else None,
                )
            )
        return result

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
        sampling: Mapping[str, Any] | None = None,
    ) -> ModelCall:
        """Try each model in order. `deadline` is an epoch time the whole turn must
        finish by; each attempt gets the smaller of its own timeout and what is left.
        `sampling`: further parameters of the model call that the client chose (`top_p`,
        `seed`, `stop`…), passed on to every model as they are; `temperature` and
        `max_tokens` above win over the same keys in it."""
        emit = emit or (lambda _event: None)
        order = self._order(preferred)
        # The built-in offline model has no provider to cool down: skipping it saves
        # two Redis round trips per model call in offline mode.
        live = [e for e in order if e.spec.id != OFFLINE_MODEL_ID]
        tracked = [e.key for e in live] + sorted({e.provider for e in live if e.provider})
        cooling = await self._cooldowns.cooling(tracked) if tracked else {}
        prompt_tokens = estimate_tokens(messages)
        fallbacks: list[dict[str, str]] = []
        causes: list[str] = []  # why each fallback happened; a cooldown counts as its cause
        providers_down: dict[str, Reason] = {}
        min_window = 0

        def skip(
            index: int, reason: Reason, cause: str | None = None, *, announce: bool = True
        ) -> None:
            entry = order[index]
            item = {"model": entry.spec.id, "reason": reason.value}
            if entry.provider:
                item["provider"] = entry.provider
            fallbacks.append(item)
            causes.append(cause or reason.value)
            self._metrics.fallbacks.labels(reason.value).inc()
            if not announce:
                return
            following = order[index + 1] if index + 1 < len(order) else None
            event = {
                "event": "fallback",
                "from": entry.spec.id,
                "to": following.spec.id if following else None,
                "reason": reason.value,
            }
            if self._several_providers:
                # With one provider the event keeps its old shape (clients match on it).
                event["from_provider"] = entry.provider
                event["to_provider"] = following.provider if following else None
            emit(event)

        for index, entry in enumerate(order):
            spec = entry.spec
            if entry.provider and entry.provider in providers_down:
                skip(index, providers_down[entry.provider])
                continue
            if entry.provider and entry.provider in cooling:
                skip(index, Reason.COOLING_DOWN, self._cooldowns.cause(entry.provider))
                continue
            if entry.key in cooling:
                skip(index, Reason.COOLING_DOWN, self._cooldowns.cause(entry.key))
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
                        sampling,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = classify(exc)
                reason = failure.reason.value
                self._metrics.model_calls.labels(entry.provider or "", spec.id, reason).inc()
                log.warning(
                    "model %s of provider %s failed: %s (%s)",
                    spec.id,
                    entry.provider or "-",
                    reason,
                    type(exc).__name__,
                )
                if streamed_text:
                    reset = {"event": "reset", "model": spec.id, "reason": reason}
                    if self._several_providers:
                        reset["provider"] = entry.provider
                    emit(reset)
                await self._after_failure(entry, failure)
                details: dict[str, Any] = {"model": spec.id}
                if entry.provider:
                    details["provider"] = entry.provider
                if failure.reason is Reason.AUTH and not entry.provider:
                    raise UpstreamAuthError(
                        "the model provider rejected our credentials", details=details
                    ) from exc
                if failure.reason is Reason.BAD_REQUEST:
                    raise UpstreamBadRequest(
                        "the model provider rejected the request as invalid", details=details
                    ) from exc
                if failure.provider_wide and entry.provider:
                    providers_down[entry.provider] = failure.reason
                    if all(e.provider in providers_down for e in order[index + 1 :]):
                        # Nothing left but that provider's models: stop here, as a
                        # one-provider chain always has (no `fallback` to nowhere).
                        skip(index, failure.reason, announce=False)
                        break
                if failure.reason is Reason.CONTEXT_TOO_LONG:
                    min_window = max(min_window, spec.context_window)
                skip(index, failure.reason)
                continue
            if spec.id != OFFLINE_MODEL_ID:
                await self._cooldowns.record_success(entry.key)
            return self._observe(
                _result(spec, message, fallbacks, degraded=False, provider=entry.provider)
            )

        # Models skipped only for lacking tool support were never candidates.
        failed = [
            (f, cause)
            for f, cause in zip(fallbacks, causes, strict=True)
            if f["reason"] != Reason.NO_TOOL_SUPPORT
        ]
        # A cooldown counts as what caused it: a model cooling down because it is not
        # served, or a provider because it rejected our key, is no rate limit.
        if failed and all(
            f["reason"] == Reason.RATE_LIMIT
            or (f["reason"] == Reason.COOLING_DOWN and cause not in REJECTED)
            for f, cause in failed
        ):
            message = await _call(
                self._runnable(self._offline, tools),
                messages,
                temperature,
                max_tokens,
                stream,
                lambda: None,
                sampling,
            )
            return self._observe(
                _result(
                    self._offline.spec, message, fallbacks, degraded=True, provider=OFFLINE_MODEL_ID
                )
            )
        details = {"models": fallbacks}
        if failed and all(cause == Reason.AUTH for _, cause in failed):
            raise UpstreamAuthError(
                "every model provider rejected our credentials", details=details
            )
        if failed and all(cause in REJECTED for _, cause in failed):
            raise UpstreamRejected("every configured model rejected the request", details=details)
        raise UpstreamUnavailable("every configured model failed", details=details)

    def _observe(self, call: ModelCall) -> ModelCall:
        m = self._metrics
        m.model_calls.labels(call.provider or "", call.model_used, "success").inc()
        m.tokens.labels(call.model_used, "input").inc(call.input_tokens)
        m.tokens.labels(call.model_used, "output").inc(call.output_tokens)
        m.cost.labels(call.model_used).inc(call.cost_usd)
        return call

    async def _after_failure(self, entry: ChainEntry, failure: Failure) -> None:
        reason, policy, key = failure.reason, self._policy, entry.key
        if reason is Reason.RATE_LIMIT:
            seconds = failure.retry_after or policy.default_cooldown_seconds
            await self._cooldowns.cool(key, seconds, reason.value)
            return
        if reason is Reason.MODEL_UNAVAILABLE:
            await self._cooldowns.cool(key, policy.model_unavailable_cooldown_seconds, reason.value)
            return
        if failure.provider_wide and entry.provider:
            seconds = (
                policy.model_unavailable_cooldown_seconds
                if reason is Reason.AUTH
                else policy.failure_cooldown_seconds
            )
            await self._cooldowns.cool(entry.provider, seconds, reason.value)
            return
        if reason in (
            Reason.AUTH,
            Reason.BAD_REQUEST,
            Reason.CONTEXT_TOO_LONG,
            Reason.CONTENT_POLICY,
            Reason.UNSUPPORTED_REQUEST,
        ):
            return  # says nothing about the model's health
        failures = await self._cooldowns.record_failure(key, reason.value)
        if failures >= policy.failure_threshold:
            await self._cooldowns.cool(key, policy.failure_cooldown_seconds, reason.value)


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
    sampling: Mapping[str, Any] | None = None,
) -> AIMessage:
    kwargs: dict[str, Any] = dict(sampling or {})
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
    spec: ModelSpec,
    message: AIMessage,
    fallbacks: list[dict[str, str]],
    *,
    degraded: bool,
    provider: str | None = None,
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
        provider=provider,
    )
