"""The fallback chain's streaming path: one merge of the chunks, cached tool binding."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import BaseTool, StructuredTool

from agent_server.config import OFFLINE_MODEL_ID
from agent_server.llm.fallback import ChainEntry, ModelChain
from agent_server.llm.offline import OfflineChatModel
from agent_server.llm.registry import KNOWN_MODELS, ModelSpec

USAGE = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}


def _chunks() -> list[AIMessageChunk]:
    """What a provider streams: role, text, a tool call in two halves, finish, usage."""
    return [
        AIMessageChunk(content=""),
        AIMessageChunk(content="Let me "),
        AIMessageChunk(content="check."),
        AIMessageChunk(
            content="",
            tool_call_chunks=[tool_call_chunk(name="double", args='{"n"', id="call_1", index=0)],
        ),
        AIMessageChunk(
            content="", tool_call_chunks=[tool_call_chunk(name=None, args=": 21}", index=0)]
        ),
        AIMessageChunk(content="", response_metadata={"finish_reason": "tool_calls"}),
        AIMessageChunk(content="", usage_metadata=USAGE, response_metadata={"cost_usd": 0.5}),
    ]


class StreamingModel(BaseChatModel):
    """Streams `_chunks()`; counts `bind_tools` calls."""

    binds: int = 0

    @property
    def _llm_type(self) -> str:
        return "streaming-test"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.binds += 1
        return self.bind(bound=[tool.name for tool in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        merged = functools.reduce(lambda a, b: a + b, _chunks())
        return ChatResult(generations=[ChatGeneration(message=merged)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in _chunks():
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in _chunks():
            generation = ChatGenerationChunk(message=chunk)
            if run_manager:
                await run_manager.on_llm_new_token(generation.text, chunk=generation)
            yield generation


async def _double(n: int) -> int:
    return 2 * n


def _tool(name: str) -> BaseTool:
    return StructuredTool.from_function(coroutine=_double, name=name, description=name)


def _chain(model: BaseChatModel) -> ModelChain:
    offline = ChainEntry(KNOWN_MODELS[OFFLINE_MODEL_ID], OfflineChatModel())
    return ModelChain([ChainEntry(ModelSpec("m1"), model)], offline)


async def test_streamed_reply_is_merged_like_chunk_by_chunk_addition() -> None:
    call = await _chain(StreamingModel()).ainvoke(
        [HumanMessage("double 21")], tools=[_tool("double")], stream=True
    )
    message = call.message
    assert message.content == "Let me check."
    assert message.tool_calls == [
        {"name": "double", "args": {"n": 21}, "id": "call_1", "type": "tool_call"}
    ]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert (call.input_tokens, call.output_tokens, call.cost_usd) == (7, 3, 0.5)


async def test_tools_are_bound_once_per_model_and_tool_set() -> None:
    model = StreamingModel()
    chain = _chain(model)
    double, triple = _tool("double"), _tool("triple")
    for _ in range(3):
        await chain.ainvoke([HumanMessage("hi")], tools=[double], stream=True)
    assert model.binds == 1
    await chain.ainvoke([HumanMessage("hi")], tools=[double, triple], stream=True)
    await chain.ainvoke([HumanMessage("hi")], tools=[double, triple])
    assert model.binds == 2
    await chain.ainvoke([HumanMessage("hi")], tools=[], stream=True)
    assert model.binds == 2


@pytest.mark.parametrize("stream", [True, False])
async def test_offline_model_answers_streamed_and_not(stream: bool) -> None:
    offline = ChainEntry(KNOWN_MODELS[OFFLINE_MODEL_ID], OfflineChatModel())
    chain = ModelChain([offline], offline)
    call = await chain.ainvoke([HumanMessage("Calculate 2 + 3")], tools=[], stream=stream)
    assert call.model_used == OFFLINE_MODEL_ID
    assert str(call.message.content).strip()
