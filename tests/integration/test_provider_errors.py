# ruff: noqa: E501  (the providers' error messages are quoted whole)
"""The classification table row by row, with each provider's real error bodies, through
the real langchain-openai path (JSON and SSE, non-streaming and streaming).

Each body is the shape the provider documents or is seen to send (sources beside the
rows of `RULES` in `llm/errors.py`); the fake upstream sends it verbatim.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_server.llm.errors import Reason, classify
from agent_server.llm.openai_compatible import make_openai_compatible_model
from agent_server.llm.providers import Provider
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, fail, fake_upstream


def openrouter(code: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def openai_error(message: str, code: str | None, type_: str | None = "invalid_request_error"):
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def vllm(code: int, message: str, type_: str) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": type_, "param": None, "code": code}


ROWS: list[tuple[str, int, dict[str, Any], Reason]] = [
    # OpenRouter (openrouter.ai/docs/api-reference/errors)
    (
        "openrouter-400-invalid-model",
        400,
        openrouter(400, "deepseek/deepseek-chat-v3-0324:freee is not a valid model ID"),
        Reason.MODEL_UNAVAILABLE,
    ),
    (
        "openrouter-400-bad-params",
        400,
        openrouter(400, 'Input required: specify "prompt" or "messages"'),
        Reason.BAD_REQUEST,
    ),
    ("openrouter-401", 401, openrouter(401, "No auth credentials found"), Reason.AUTH),
    (
        "openrouter-402",
        402,
        openrouter(402, "Insufficient credits. Add more using https://openrouter.ai/credits"),
        Reason.PAYMENT_REQUIRED,
    ),
    (
        "openrouter-403-moderation",
        403,
        openrouter(
            403,
            'openai/gpt-4o requires moderation on OpenAI. Your input was flagged for "harassment". No credits were charged.',
            metadata={
                "reasons": ["harassment"],
                "flagged_input": "...",
                "provider_name": "OpenAI",
                "model_slug": "openai/gpt-4o",
            },
        ),
        Reason.CONTENT_POLICY,
    ),
    (
        "openrouter-404-no-endpoints",
        404,
        openrouter(404, "No endpoints found for deepseek/deepseek-chat-v3-0324:free."),
        Reason.MODEL_UNAVAILABLE,
    ),
    (
        "openrouter-404-no-tool-endpoints",
        404,
        openrouter(
            404,
            "No endpoints found that support tool use. To learn more about provider routing, visit: https://openrouter.ai/docs/provider-routing",
        ),
        Reason.UNSUPPORTED_REQUEST,
    ),
    ("openrouter-408", 408, openrouter(408, "Request timed out"), Reason.TIMEOUT),
    (
        "openrouter-429",
        429,
        openrouter(429, "Rate limit exceeded: free-models-per-day", metadata={"headers": {}}),
        Reason.RATE_LIMIT,
    ),
    (
        "openrouter-502",
        502,
        openrouter(
            502,
            "Provider returned error",
            metadata={"raw": "upstream crashed", "provider_name": "Chutes"},
        ),
        Reason.SERVER_ERROR,
    ),
    (
        "openrouter-503",
        503,
        openrouter(503, "No allowed providers are available for the selected model."),
        Reason.SERVER_ERROR,
    ),
    # OpenAI (platform error codes; bodies as quoted in openai-agents-python#458,
    # griptape-ai/ComfyUI-Griptape#312)
    (
        "openai-404-model-not-found",
        404,
        openai_error(
            "The model `gpt-4o-2024-08-06` does not exist or you do not have access to it.",
            "model_not_found",
        ),
        Reason.MODEL_UNAVAILABLE,
    ),
    (
        "openai-400-unsupported-parameter",
        400,
        openai_error(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "unsupported_parameter",
        ),
        Reason.UNSUPPORTED_REQUEST,
    ),
    (
        "openai-400-unsupported-value",
        400,
        openai_error(
            "Unsupported value: 'temperature' does not support 0.7 with this model. Only the default (1) value is supported.",
            "unsupported_value",
        ),
        Reason.UNSUPPORTED_REQUEST,
    ),
    (
        "openai-400-context-length",
        400,
        openai_error(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
            "context_length_exceeded",
        ),
        Reason.CONTEXT_TOO_LONG,
    ),
    (
        "openai-400-content-filter",
        400,
        openai_error(
            "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "content_filter",
            None,
        ),
        Reason.CONTENT_POLICY,
    ),
    (
        "openai-401",
        401,
        openai_error("Incorrect API key provided: sk-...", "invalid_api_key"),
        Reason.AUTH,
    ),
    (
        "openai-400-invalid-request",
        400,
        openai_error("Invalid type for 'messages[0].content'", "invalid_type"),
        Reason.BAD_REQUEST,
    ),
    # Ollama (netease-youdao/QAnything#555)
    (
        "ollama-404",
        404,
        openai_error('model "qwen2.5:7b" not found, try pulling it first', None, "api_error"),
        Reason.MODEL_UNAVAILABLE,
    ),
    # vLLM (vllm-project/vllm#3485, #20409)
    (
        "vllm-404",
        404,
        vllm(404, "The model `Qwen/Qwen2.5-7B` does not exist.", "NotFoundError"),
        Reason.MODEL_UNAVAILABLE,
    ),
    (
        "vllm-400-context",
        400,
        vllm(
            400,
            "This model's maximum context length is 16384 tokens. However, you requested 122946 tokens (112946 in the messages, 10000 in the completion).",
            "BadRequestError",
        ),
        Reason.CONTEXT_TOO_LONG,
    ),
    (
        "vllm-422-validation",
        422,
        {
            "detail": [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", "parallel_tool_calls"],
                    "msg": "Extra inputs are not permitted",
                }
            ]
        },
        Reason.UNSUPPORTED_REQUEST,
    ),
    # llama.cpp server (tools/server: format_error_response)
    (
        "llamacpp-400-context",
        400,
        {
            "error": {
                "code": 400,
                "message": "request (4476 tokens) exceeds the available context size (4096 tokens)",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 4476,
                "n_ctx": 4096,
            }
        },
        Reason.CONTEXT_TOO_LONG,
    ),
    (
        "llamacpp-500",
        500,
        {
            "error": {
                "code": 500,
                "message": "Failed to parse tools: type must be string, but is null",
                "type": "server_error",
            }
        },
        Reason.SERVER_ERROR,
    ),
    (
        "llamacpp-401",
        401,
        {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}},
        Reason.AUTH,
    ),
]

IN_200: list[tuple[str, dict[str, Any], Reason]] = [
    # OpenRouter: once the model started, errors come in the 200 body or as an SSE
    # `data:` event (openrouter.ai/docs/api-reference/errors, "/streaming").
    ("openrouter-502-in-200", openrouter(502, "Provider returned error"), Reason.SERVER_ERROR),
    (
        "openrouter-string-code-in-200",
        {"error": {"code": "server_error", "message": "Provider disconnected"}},
        Reason.SERVER_ERROR,
    ),
    ("openrouter-429-in-200", openrouter(429, "Rate limit exceeded upstream"), Reason.RATE_LIMIT),
    (
        "openrouter-403-in-200",
        openrouter(403, "Output was flagged by moderation", metadata={"reasons": ["violence"]}),
        Reason.CONTENT_POLICY,
    ),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


@pytest.fixture
async def model(upstream: FakeUpstream, tmp_path: Path) -> AsyncIterator[Any]:
    """A model with its own HTTP client: langchain-openai's shared default client is
    bound to the event loop of the test that first used it."""
    upstream.reset()
    settings = make_settings(tmp_path, model_timeout_seconds=5.0)
    provider = Provider(name="p", base_url=upstream.base_url)
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield make_openai_compatible_model(
            "m", settings, provider=provider, http_async_client=client
        )


async def failure_of(model: Any, *, stream: bool) -> Reason:
    with pytest.raises(Exception) as info:
        if stream:
            async for _ in model.astream("hello"):
                pass
        else:
            await model.ainvoke("hello")
    return classify(info.value).reason


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("status", "body", "reason"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
async def test_http_error_row(
    model: Any, upstream: FakeUpstream, stream: bool, status: int, body: dict, reason: Reason
) -> None:
    upstream.script("m", fail("error", status=status, error_body=body))
    assert await failure_of(model, stream=stream) is reason
    assert upstream.models_tried() == ["m"]


@pytest.mark.parametrize("stream", [False, True], ids=["json-body", "sse-event"])
@pytest.mark.parametrize(("body", "reason"), [r[1:] for r in IN_200], ids=[r[0] for r in IN_200])
async def test_error_inside_a_200(
    model: Any, upstream: FakeUpstream, stream: bool, body: dict, reason: Reason
) -> None:
    upstream.script(
        "m", fail("error_in_200", error_body=body, drop_after_tokens=2, text="one two three four")
    )
    assert await failure_of(model, stream=stream) is reason


async def test_a_refused_connection_is_provider_wide(tmp_path: Path) -> None:
    from tests.support.servers import free_port

    settings = make_settings(tmp_path, model_timeout_seconds=2.0)
    dead = Provider(name="dead", base_url=f"http://127.0.0.1:{free_port()}/v1")
    model = make_openai_compatible_model("m", settings, provider=dead)
    with pytest.raises(Exception) as info:
        await model.ainvoke("hello")
    failure = classify(info.value)
    assert failure.reason is Reason.CONNECTION and failure.provider_wide
