"""Which raw streamed chunks the OpenAI-compatible model drops before langchain."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI

from agent_server.llm.openai_compatible import OpenAICompatibleChat, carries_nothing, plain_text


def chunk(delta: Any = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return {"id": "c1", "object": "chat.completion.chunk", "choices": [choice], **extra}


@pytest.mark.parametrize(
    "raw",
    [
        chunk({"role": "assistant", "content": ""}),
        chunk({"role": "assistant", "content": None, "refusal": None}),
        chunk({"role": "assistant"}),
        chunk({}),
    ],
)
def test_role_only_chunks_carry_nothing(raw: dict[str, Any]) -> None:
    assert carries_nothing(raw)


@pytest.mark.parametrize(
    "raw",
    [
        chunk({"role": "assistant", "content": "Hi"}),
        chunk({}, finish="stop", model="m1"),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}),
        chunk({"role": "assistant", "content": "", "reasoning": "thinking"}),
        chunk({"content": ""}, usage={"prompt_tokens": 1, "completion_tokens": 1}),
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 1, "cost": 0.1}},
        {"id": "c1", "choices": [{"delta": {"content": "a"}}, {"delta": {"content": "b"}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": None}]},
    ],
)
def test_chunks_with_anything_in_them_are_kept(raw: dict[str, Any]) -> None:
    assert not carries_nothing(raw)


def test_usage_cost_is_kept_on_the_usage_chunk() -> None:
    model = OpenAICompatibleChat(model="m1", api_key="k", base_url="http://127.0.0.1:9/v1")
    raw = {
        "id": "c1",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.02},
    }
    generation = model._convert_chunk_to_generation_chunk(raw, AIMessageChunk, None)
    assert generation is not None
    message = generation.message
    assert isinstance(message, AIMessageChunk)
    assert message.response_metadata["cost_usd"] == 0.02
    assert message.usage_metadata is not None
    assert message.usage_metadata["total_tokens"] == 5
    assert (
        model._convert_chunk_to_generation_chunk(chunk({"role": "assistant"}), AIMessageChunk, None)
        is None
    )


PLAIN = [
    chunk({"content": " word"}),
    chunk({"role": "assistant", "content": "Hi"}),
    chunk({"content": "x", "refusal": None, "reasoning": None, "tool_calls": []}),
    chunk({"content": "ünïcødé ✓"}),
]
NOT_PLAIN = [
    chunk({"content": "x"}, finish="stop", model="m1"),
    chunk({"content": "x", "tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}),
    chunk({"content": "x", "id": "msg-1"}),
    chunk({"content": "x", "reasoning": "thinking"}),
    chunk({"content": "x"}, usage={"prompt_tokens": 1, "completion_tokens": 1}),
    chunk({"role": "user", "content": "x"}),
    {"id": "c1", "choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": {"content": []}}]},
    {"id": "c1", "choices": [{"delta": {"content": "a"}}, {"delta": {"content": "b"}}]},
]


@pytest.mark.parametrize("raw", PLAIN + NOT_PLAIN)
def test_every_chunk_converts_exactly_as_langchain_openai_does(raw: dict[str, Any]) -> None:
    """The plain-text shortcut must stay invisible: same message, same metadata."""
    model = OpenAICompatibleChat(model="m1", api_key="k", base_url="http://127.0.0.1:9/v1")
    ours = model._convert_chunk_to_generation_chunk(raw, AIMessageChunk, None)
    theirs = ChatOpenAI._convert_chunk_to_generation_chunk(model, raw, AIMessageChunk, None)
    assert ours is not None and theirs is not None
    assert ours.message == theirs.message
    assert ours.generation_info == theirs.generation_info
    assert ours.text == theirs.text


def test_only_pure_text_chunks_take_the_shortcut() -> None:
    assert [plain_text(raw) for raw in PLAIN] == [" word", "Hi", "x", "ünïcødé ✓"]
    assert [plain_text(raw) for raw in NOT_PLAIN] == [None] * len(NOT_PLAIN)


def test_the_first_chunk_keeps_response_headers() -> None:
    """`include_response_headers` arrives as the first chunk's generation info."""
    model = OpenAICompatibleChat(model="m1", api_key="k", base_url="http://127.0.0.1:9/v1")
    info = {"headers": {"x-request-id": "r1"}}
    generation = model._convert_chunk_to_generation_chunk(PLAIN[0], AIMessageChunk, info)
    assert generation is not None
    assert generation.generation_info == info
