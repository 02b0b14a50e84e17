"""Chat models for any OpenAI-compatible endpoint (OpenRouter by default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import httpx
import openai
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI, AsyncStream, RequestOptions
from pydantic import Field, model_validator

from agent_server.config import Settings
from agent_server.llm.compat import PROFILES, Compat, FixedStream
from agent_server.llm.errors import UpstreamReplyError, classify_error_body
from agent_server.llm.providers import Provider

REQUEST_OPTION_KEYS = ("extra_headers", "extra_query", "extra_body", "timeout")
"""`create()` arguments that shape the HTTP request rather than the JSON body."""


class RawChunkCompletions:
    """`client.chat.completions` whose streamed chunks are the decoded JSON dicts.

    Why hand-written: `AsyncCompletions.create(stream=True)` first walks the whole
    request through the SDK's TypedDict transform (~0.4 ms per call here, on the
    critical path before the request is sent: it grows with the history), then
    builds a pydantic `ChatCompletionChunk` for every chunk, which langchain-openai
    immediately turns back into a dict (`model_dump`). Posting the same body with
    `cast_to=object` keeps everything else of the SDK (auth, headers, timeouts,
    errors as `openai.APIStatusError` & co., SSE decoding, `[DONE]`) and cuts the
    per-token CPU from ~269 to ~159 µs. langchain-openai accepts dict chunks as is.
    Non-streamed calls and everything else go to the SDK's resource unchanged.
    """

    def __init__(self, client: AsyncOpenAI, compat: Compat | None = None) -> None:
        self._client = client
        self._completions = client.chat.completions
        self._compat = compat or PROFILES["openai"]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._completions, name)

    async def create(self, **params: Any) -> Any:
        if not params.get("stream"):
            return await self._completions.create(**params)
        stream = await self._client.post(
            "/chat/completions",
            body={k: v for k, v in params.items() if k not in REQUEST_OPTION_KEYS},
            options=request_options(params),
            cast_to=object,
            stream=True,
            stream_cls=AsyncStream[object],
        )
        return FixedStream(stream, self._compat) if self._compat.fixes_stream() else stream


def request_options(params: dict[str, Any]) -> RequestOptions:
    """What `create()` makes of its request-shaping arguments (`make_request_options`)."""
    options: RequestOptions = {"security": {"bearer_auth": True}}
    if params.get("extra_headers") is not None:
        options["headers"] = params["extra_headers"]
    if params.get("extra_body") is not None:
        options["extra_json"] = params["extra_body"]
    if params.get("extra_query") is not None:
        options["params"] = params["extra_query"]
    if "timeout" in params:
        options["timeout"] = params["timeout"]
    return options


class OpenAICompatibleChat(ChatOpenAI):
    """`ChatOpenAI` that keeps the provider-reported cost of streamed replies and
    streams raw chunks (see `RawChunkCompletions`).

    langchain-openai turns the final `usage` chunk into `usage_metadata` and drops
    the rest; OpenRouter puts the billed cost in `usage.cost`. Non-streamed
    replies keep it in `response_metadata["token_usage"]` already.
    """

    compat: Compat = Field(default_factory=lambda: PROFILES["openai"], exclude=True)
    """The provider's dialect fixes (`llm/compat.py`)."""

    @model_validator(mode="after")
    def _stream_raw_chunks(self) -> Self:
        if self.root_async_client is not None and not isinstance(
            self.async_client, RawChunkCompletions
        ):
            self.async_client = RawChunkCompletions(self.root_async_client, self.compat)
        return self

    def _get_request_payload(
        self, input_: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        return self.compat.fix_request(payload)

    def _create_chat_result(
        self, response: dict[str, Any] | openai.BaseModel, generation_info: dict | None = None
    ) -> ChatResult:
        """A 200 whose body is `{"error": {...}}` and no choices (OpenRouter, once the
        model has started) is a failure of that model, classified like any other
        (langchain-openai raises a bare ValueError, which would read as malformed)."""
        body = response if isinstance(response, Mapping) else getattr(response, "model_extra", None)
        error = (body or {}).get("error")
        if error and not (body or {}).get("choices"):
            message = error.get("message") if isinstance(error, Mapping) else str(error)
            raise UpstreamReplyError(
                classify_error_body({"error": error}), f"error inside a 200 reply: {message}"
            )
        return super()._create_chat_result(response, generation_info)

    def _convert_chunk_to_generation_chunk(
        self,
        chunk: dict[str, Any],
        default_chunk_class: type,
        base_generation_info: dict[str, Any] | None,
    ) -> ChatGenerationChunk | None:
        if carries_nothing(chunk):
            return None  # langchain-openai skips it
        if (
            default_chunk_class is AIMessageChunk
            and not base_generation_info
            and self.output_version != "v1"
            and (text := plain_text(chunk)) is not None
        ):
            return ChatGenerationChunk(
                message=AIMessageChunk(content=text, response_metadata={"model_provider": "openai"})
            )
        generation = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        cost = (chunk.get("usage") or {}).get("cost")
        if generation is not None and cost is not None:
            generation.message.response_metadata["cost_usd"] = float(cost)
        return generation


def carries_nothing(chunk: dict[str, Any]) -> bool:
    """True for a chunk that would become an empty message chunk: the role-only
    `{"role": "assistant", "content": ""}` every provider sends first.

    Why drop it: every chunk goes through langchain's callbacks, LangGraph's
    messages stream and our SSE loop before the next one is read, so this one
    delayed the first token by ~0.2 ms for nothing (it adds nothing to the merged
    message: the role is always the assistant's).
    """
    choices = chunk.get("choices")
    if chunk.get("usage") or not isinstance(choices, list) or len(choices) != 1:
        return False
    choice = choices[0]
    delta = choice.get("delta") if isinstance(choice, dict) else None
    if not isinstance(delta, dict) or choice.get("finish_reason") or choice.get("logprobs"):
        return False
    return not any(value for key, value in delta.items() if key != "role")


def plain_text(chunk: dict[str, Any]) -> str | None:
    """The text of a chunk that carries a piece of the answer and nothing else (no
    tool call, usage, finish reason, logprobs or message id): nearly every chunk.

    Why these get their own conversion: langchain-core's `astream` keeps every
    chunk of a reply until it ends (for `on_llm_end`), ~2.35 KB each. langchain-openai
    builds the message with four explicit fields and `astream` then assigns
    `response_metadata`, so pydantic's per-object fields-set holds five names and
    outgrows CPython's small set table (728 instead of 216 bytes). Built from
    `content` and `response_metadata` only, the same message (equal field for field,
    tested) is kept in ~1.84 KB: 12 MB less for 500 streams of 50 tokens.
    """
    choices = chunk.get("choices")
    if chunk.get("usage") or not isinstance(choices, list) or len(choices) != 1:
        return None
    choice = choices[0]
    if not isinstance(choice, dict) or choice.get("finish_reason") or choice.get("logprobs"):
        return None
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return None
    # Providers send empty extras with every chunk (`"refusal": null`, OpenRouter's
    # `"reasoning": null`); langchain-openai ignores those too.
    if any(value for key, value in delta.items() if key not in ("role", "content")):
        return None
    content = delta.get("content")
    if not isinstance(content, str) or delta.get("role", "assistant") != "assistant":
        return None
    return content


def make_openai_compatible_model(
    model_id: str,
    settings: Settings,
    *,
    provider: Provider | None = None,
    fallback_ids: list[str] | None = None,
    http_async_client: httpx.AsyncClient | None = None,
) -> ChatOpenAI:
    """One upstream model of `provider` (default: the `OPENROUTER_*` shorthand). Retries
    are ours (the fallback chain), not the SDK's: the SDK's silent retries would hide
    failures the chain must classify.

    No `stream_chunk_timeout`: langchain-openai's per-chunk timer wraps every chunk
    in `asyncio.wait_for` (a task per token: 8.3 -> 6.8 ms CPU per 50-token turn
    without it), and a stalled stream is already bounded by the chain's
    per-attempt timeout and the client's read timeout (both `MODEL_TIMEOUT_SECONDS`).

    With `OPENROUTER_SERVER_FALLBACK` on, a provider whose compat allows OpenRouter's
    extras also gets the `models` list (this model, then the rest of the chain on the
    same provider) so OpenRouter can fail over server-side first; `OPENROUTER_PROVIDER`
    is sent as `provider`.
    """
    if provider is None:
        from agent_server.llm.models_file import from_settings

        provider = from_settings(settings).chain[0].provider
    extra_body: dict[str, Any] = {}
    if provider.compat.openrouter_extras and settings.openrouter_server_fallback:
        extra_body["models"] = [model_id, *(fallback_ids or [])]
    if provider.compat.openrouter_extras and settings.openrouter_provider:
        extra_body["provider"] = settings.openrouter_provider
    return OpenAICompatibleChat(
        model=model_id,
        api_key=provider.bearer(),
        base_url=provider.base_url,
        timeout=settings.model_timeout_seconds,
        max_retries=0,
        stream_usage=True,
        stream_chunk_timeout=None,
        extra_body=extra_body or None,
        default_headers={"X-Title": "agent-server", **provider.headers},
        compat=provider.compat,
        # None: langchain-openai's shared client for this base URL and timeout.
        http_async_client=http_async_client,
    )
