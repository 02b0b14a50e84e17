"""A scripted chat model for graph tests: answers from a list, records what it saw.

Each script step is an `AIMessage` (returned as a fresh copy), a `str` (becomes
an `AIMessage`), an exception instance (raised), or a callable taking the
received messages and returning one of those. `repeat_last=True` replays the
last step forever (a model that always asks for a tool). Every call is recorded
with the messages it received and the names of the tools bound to it (None
when no tools were bound), so tests can check trimming and tool binding.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool
from pydantic import Field

_ids = itertools.count(1)


def tool_call(name: str, args: dict[str, Any] | None = None, call_id: str | None = None) -> dict:
    """A tool call dict as models put them on `AIMessage.tool_calls`."""
    return {
        "name": name,
        "args": args or {},
        "id": call_id or f"call_{next(_ids)}",
        "type": "tool_call",
    }


def asks_for(*calls: dict[str, Any], content: str = "") -> AIMessage:
    return AIMessage(content=content, tool_calls=list(calls))


@dataclass
class Call:
    messages: list[BaseMessage]
    tools: list[str] | None
    kwargs: dict[str, Any]


class ScriptedChatModel(GenericFakeChatModel):
    """`GenericFakeChatModel` with tool binding, exceptions and call recording."""

    messages: Any = None  # unused: the script below replaces the iterator
    script: list[Any] = Field(default_factory=list)
    repeat_last: bool = False
    calls: list[Call] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[BaseTool], **kwargs: Any) -> Any:  # type: ignore[override]
        return self.bind(bound_tools=[tool.name for tool in tools], **kwargs)

    def _next_step(self, messages: list[BaseMessage]) -> AIMessage:
        index = len(self.calls) - 1
        if index >= len(self.script):
            if not (self.repeat_last and self.script):
                raise AssertionError(f"script exhausted after {len(self.script)} steps")
            index = len(self.script) - 1
        step = self.script[index]
        if callable(step) and not isinstance(step, BaseException | AIMessage):
            step = step(messages)
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, str):
            return AIMessage(content=step)
        assert isinstance(step, AIMessage), step
        # Fresh copy with fresh tool call ids: the graph keys messages by id.
        calls = [{**c, "id": f"call_{next(_ids)}"} for c in step.tool_calls]
        return AIMessage(
            content=step.content,
            tool_calls=calls,
            usage_metadata=step.usage_metadata,
            response_metadata=dict(step.response_metadata),
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = kwargs.pop("bound_tools", None)
        self.calls.append(Call(list(messages), tools, kwargs))
        return ChatResult(generations=[ChatGeneration(message=self._next_step(messages))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, None, **kwargs)

    @property
    def _llm_type(self) -> str:
        return "scripted"
