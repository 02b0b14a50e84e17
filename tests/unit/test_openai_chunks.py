"""Which raw streamed chunks the OpenAI-compatible model drops before langchain."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk

from agent_server.llm.openai_compatible import OpenAICompatibleChat, carries_nothing


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
