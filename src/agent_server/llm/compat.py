"""Per-server request/response fixes (`compat = "..."` of a provider in the models file).

OpenAI-compatible servers are compatible up to a point. Each profile is a small,
named set of fixes applied on our side of the wire, so the rest of the code (and
langchain-openai) can speak one dialect:

| profile      | fixes                                                                 |
|--------------|-----------------------------------------------------------------------|
| `openai`     | none (the reference dialect)                                          |
| `openrouter` | none; OpenRouter's `models`/`provider` extras may be sent             |
| `ollama`     | `max_tokens` instead of `max_completion_tokens` (Ollama's OpenAI      |
|              | compatibility lists `max_tokens` only); no `parallel_tool_calls`      |
| `vllm`       | `max_tokens` (older vLLM releases reject `max_completion_tokens`);    |
|              | no `parallel_tool_calls`                                              |
| `llamacpp`   | `max_tokens` (llama.cpp's server ignores `max_completion_tokens`);    |
|              | `content: ""` instead of null beside tool calls (its chat templates   |
|              | answer 500 to a null content); the function name it repeats in every  |
|              | streamed tool-call delta (ggml-org/llama.cpp#13774) is kept only in   |
|              | the first, so names do not merge into "calculatorcalculator"; no      |
|              | `parallel_tool_calls`                                                 |

A provider may also list `drop_params` (e.g. `["stream_options"]`) for a server
that rejects a field none of the profiles drop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

CompatName = Literal["openai", "openrouter", "ollama", "vllm", "llamacpp"]


@dataclass(frozen=True, slots=True)
class Compat:
    name: str = "openai"
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    empty_content_with_tool_calls: bool = False
    """Send `content: ""` (not null) in an assistant message that carries tool calls."""
    dedupe_streamed_tool_names: bool = False
    """Drop the function name from every streamed delta of a tool call but the first."""
    drop_params: frozenset[str] = field(default_factory=frozenset)
    """Request fields this server rejects: never sent."""
    openrouter_extras: bool = False
    """OpenRouter's `models` (server-side fallback) and `provider` fields may be sent."""

    def with_dropped(self, params: Iterable[str]) -> Compat:
        return replace(self, drop_params=self.drop_params | frozenset(params))

    def fix_request(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The JSON body as this server wants it (a new dict; `payload` is not changed)."""
        payload = dict(payload)
        if self.max_tokens_field == "max_tokens" and "max_completion_tokens" in payload:
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        for name in self.drop_params:
            payload.pop(name, None)
        if self.empty_content_with_tool_calls and "messages" in payload:
            payload["messages"] = [
                {**m, "content": ""}
                if m.get("role") == "assistant" and m.get("tool_calls") and m.get("content") is None
                else m
                for m in payload["messages"]
            ]
        return payload

    def fixes_stream(self) -> bool:
        return self.dedupe_streamed_tool_names


_NO_PARALLEL = frozenset({"parallel_tool_calls"})

PROFILES: dict[str, Compat] = {
    "openai": Compat("openai"),
    "openrouter": Compat("openrouter", openrouter_extras=True),
    "ollama": Compat("ollama", max_tokens_field="max_tokens", drop_params=_NO_PARALLEL),
    "vllm": Compat("vllm", max_tokens_field="max_tokens", drop_params=_NO_PARALLEL),
    "llamacpp": Compat(
        "llamacpp",
        max_tokens_field="max_tokens",
        empty_content_with_tool_calls=True,
        dedupe_streamed_tool_names=True,
        drop_params=_NO_PARALLEL,
    ),
}


def profile(name: str) -> Compat:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown compat profile {name!r} (one of: {', '.join(PROFILES)})"
        ) from None


class StreamFixer:
    """Applies a profile's response fixes to one stream's decoded chunks (state is per
    stream: which tool calls have already been named)."""

    def __init__(self, compat: Compat) -> None:
        self._compat = compat
        self._named: set[tuple[int, int]] = set()

    def fix(self, chunk: Any) -> Any:
        if not self._compat.dedupe_streamed_tool_names or not isinstance(chunk, dict):
            return chunk
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return chunk
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            calls = delta.get("tool_calls") if isinstance(delta, dict) else None
            if not isinstance(calls, list):
                continue
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not function.get("name"):
                    continue
                key = (int(choice.get("index") or 0), int(call.get("index") or 0))
                if key in self._named:
                    function.pop("name")
                    call.pop("id", None)  # repeated too; the first one names the call
                    call.pop("type", None)
                else:
                    self._named.add(key)
        return chunk


class FixedStream:
    """An SDK stream whose chunks go through a `StreamFixer`; langchain-openai uses the
    stream as an async context manager and iterates it, so both are forwarded."""

    def __init__(self, stream: Any, compat: Compat) -> None:
        self._stream = stream
        self._fixer = StreamFixer(compat)

    async def __aenter__(self) -> FixedStream:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._stream.__aexit__(*exc_info)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Any]:
        async for chunk in self._stream:
            yield self._fixer.fix(chunk)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
