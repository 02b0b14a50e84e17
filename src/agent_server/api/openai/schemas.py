"""OpenAI chat-completions request shapes, and which of its fields we serve.

Fields that would change the answer's meaning if ignored (`n > 1`, client-side
`tools`/`functions`, a `response_format` other than text, `logprobs`, audio output,
tool and function messages, non-text content parts) are refused with a 400 naming the
parameter; harmless sampling fields are accepted and passed on to the upstream.
Unknown fields are allowed: newer SDKs send more than we know of.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent_server.errors import UnsupportedParameter

AGENT_MODEL = "agent"
PINNED_PREFIX = "agent:"
"""`agent:<model id>`: the agent with that chain model tried first."""
SAMPLING_FIELDS = ("top_p", "presence_penalty", "frequency_penalty", "seed", "stop")
"""Accepted and passed on to the model call as they are (run context `sampling`)."""
HARMLESS_TOOL_CHOICES = (None, "none", "auto")
"""`tool_choice` values that ask for nothing when the client sends no tools."""


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    function_call: Any = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=4000)
    max_completion_tokens: int | None = Field(None, ge=1, le=4000)
    n: int | None = Field(None, ge=1)
    user: str | None = Field(None, max_length=256)
    """Recorded in the run's metadata; never who the caller is (that is the API key)."""
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    modalities: list[str] | None = None
    audio: Any = None
    agent_events: bool = False
    """Ours: add the agent's tool calls and fallbacks to streamed chunks (`agent_event`)."""
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    """Up to 4 sequences, as OpenAI takes."""

    def refuse_unsupported(self) -> None:
        """400 for what would change the answer's meaning if we ignored it."""
        if self.n not in (None, 1):
            raise UnsupportedParameter("n", "only n=1 is supported")
        for name in ("tools", "functions"):
            if getattr(self, name):
                raise UnsupportedParameter(
                    name,
                    f"`{name}`: client-side tools are not supported; the agent runs its own",
                )
        for name in ("tool_choice", "function_call"):
            if getattr(self, name) not in HARMLESS_TOOL_CHOICES:
                raise UnsupportedParameter(
                    name, f"`{name}`: client-side tools are not supported; the agent runs its own"
                )
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            raise UnsupportedParameter(
                "response_format", f"response_format {kind!r} is not supported (only text)"
            )
        if self.logprobs or self.top_logprobs:
            raise UnsupportedParameter("logprobs", "logprobs are not supported")
        if self.audio is not None or any(m != "text" for m in self.modalities or ()):
            raise UnsupportedParameter("modalities", "only text output is supported")
        for index, message in enumerate(self.messages):
            self._refuse_message(index, message)

    @staticmethod
    def _refuse_message(index: int, message: ChatMessage) -> None:
        if message.role in ("tool", "function"):
            raise UnsupportedParameter(
                f"messages[{index}].role", f"{message.role!r} messages are not supported"
            )
        if message.tool_calls or message.function_call:
            raise UnsupportedParameter(
                f"messages[{index}].tool_calls",
                "assistant tool calls are not supported: the agent runs its own tools",
            )
        if isinstance(message.content, list):
            for part in message.content:
                if part.type != "text":
                    raise UnsupportedParameter(
                        f"messages[{index}].content",
                        f"content parts of type {part.type!r} are not supported (text only)",
                    )

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def sampling(self) -> dict[str, Any]:
        """The harmless sampling fields the client gave (and only those)."""
        return {name: v for name in SAMPLING_FIELDS if (v := getattr(self, name)) is not None}
