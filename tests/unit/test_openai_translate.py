"""The OpenAI surface's pure parts: request checks, translation to and from the run
core, errors in OpenAI's shape (the middleware driven as an ASGI app), and the relay
over made-up run events (no I/O)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent_server.api.openai.errors import OpenAIErrorShape, openai_error
from agent_server.api.openai.relay import Relay
from agent_server.api.openai.schemas import ChatCompletionRequest
from agent_server.api.openai.translate import (
    ChunkStream,
    agent_headers,
    completion,
    graph_messages,
    run_input,
    usage_of,
)
from agent_server.errors import RunFailed, StoreUnavailable, UnsupportedParameter
from agent_server.runs.events import RunEvent

SUMMARY = {
    "response": "10 * 20 = 200",
    "model_used": "m2",
    "fallbacks": [{"model": "m1", "reason": "rate_limit"}],
    "degraded": False,
    "usage": {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
}


def request(**fields: Any) -> ChatCompletionRequest:
    values: dict[str, Any] = {"model": "agent", "messages": [{"role": "user", "content": "hi"}]}
    values.update(fields)
    return ChatCompletionRequest.model_validate(values)


# --- requests ---------------------------------------------------------------------


def test_messages_map_roles_and_join_text_parts() -> None:
    body = request(
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": "really brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]},
            {"role": "assistant", "content": None},
            {
                "role": "user",
                "content": [{"type": "text", "text": "b"}, {"type": "text", "text": "c"}],
            },
        ]
    )
    assert graph_messages(body.messages) == [
        {"type": "system", "content": "be brief"},
        {"type": "system", "content": "really brief"},
        {"type": "human", "content": "a"},
        {"type": "ai", "content": ""},
        {"type": "human", "content": "bc"},
    ]


def test_run_input_whole_conversation_or_the_new_user_message() -> None:
    body = request(
        messages=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ]
    )
    assert len(run_input(body, continuing=False) or []) == 3
    assert run_input(body, continuing=True) == [{"type": "human", "content": "three"}]
    ends_with_answer = request(
        messages=[{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}]
    )
    assert run_input(ends_with_answer, continuing=True) is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 3}, "n"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
        ({"function_call": {"name": "f"}}, "function_call"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "logprobs"),
        ({"modalities": ["audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "modalities"),
        ({"messages": [{"role": "function", "name": "f", "content": "1"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
                ]
            },
            "messages[1].tool_calls",
        ),
    ],
)
def test_meaning_changing_fields_are_refused_with_their_param(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        request(**fields).refuse_unsupported()
    assert caught.value.details == {"param": param}
    assert caught.value.status_code == 400


def test_harmless_fields_pass_and_sampling_holds_only_those_given() -> None:
    body = request(
        n=1,
        tools=[],
        tool_choice="auto",
        response_format={"type": "text"},
        logprobs=False,
        modalities=["text"],
        top_p=0.5,
        seed=3,
        stop="END",
        some_future_field={"x": 1},
    )
    body.refuse_unsupported()
    assert body.sampling == {"top_p": 0.5, "seed": 3, "stop": "END"}
    assert request().sampling == {}


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert request(max_tokens=10, max_completion_tokens=20).token_limit == 20
    assert request(max_tokens=10).token_limit == 10
    assert request().token_limit is None


# --- results ----------------------------------------------------------------------


def test_completion_has_the_answering_model_and_usage() -> None:
    body = completion("chatcmpl-1", 1700000000, SUMMARY)
    assert body["object"] == "chat.completion" and body["model"] == "m2"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "10 * 20 = 200"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    assert usage_of({}) == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_agent_headers() -> None:
    assert agent_headers(SUMMARY, "s1") == {
        "X-Model-Used": "m2",
        "X-Fallbacks": "m1:rate_limit",
        "X-Degraded": "false",
        "X-Session-ID": "s1",
    }
    assert "X-Session-ID" not in agent_headers({**SUMMARY, "degraded": True}, None)
    assert agent_headers({**SUMMARY, "degraded": True}, None)["X-Degraded"] == "true"


def token(content: Any, node: str = "model", kind: str = "AIMessageChunk") -> tuple[str, Any]:
    return "messages", [{"type": kind, "content": content}, {"langgraph_node": node}]


def persisted(summary: dict[str, Any] = SUMMARY) -> tuple[str, Any]:
    return "updates", {"persist": {"last_turn": summary}}


def feed(stream: ChunkStream, *events: tuple[str, Any]) -> list[dict[str, Any]]:
    return [chunk for event in events for chunk in stream.feed(*event)]


def test_chunks_of_a_streamed_answer() -> None:
    stream = ChunkStream("chatcmpl-1", "agent", include_usage=True, created=5)
    chunks = feed(
        stream,
        ("metadata", {"run_id": "r"}),
        token("10 * 20"),
        token(""),
        token("ignored", node="tools"),
        token("ignored", kind="ToolMessage"),
        token([{"type": "text", "text": " = 200"}]),
        ("custom", {"event": "tool_start", "name": "calculator"}),
        persisted(),
        ("end", {"status": "success"}),
    )
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas == [{"content": "10 * 20", "role": "assistant"}, {"content": " = 200"}, {}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-2]["model"] == "m2"  # the answering model, once known
    assert chunks[0]["model"] == "agent"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 17
    assert {c["id"] for c in chunks} == {"chatcmpl-1"} and {c["created"] for c in chunks} == {5}
    assert stream.ended and stream.error is None and not stream.reset
    assert feed(stream, token("late")) == []


def test_a_turn_that_streamed_no_token_sends_its_answer_at_the_end() -> None:
    stream = ChunkStream("c", "agent")
    chunks = feed(stream, persisted(), ("end", {}))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "10 * 20 = 200"}
    assert chunks[1]["choices"][0]["finish_reason"] == "stop"
    assert len(chunks) == 2  # no usage chunk unless asked


def test_agent_events_only_when_asked() -> None:
    events = [
        ("custom", {"event": "fallback", "from": "m1", "to": "m2", "reason": "server_error"}),
        ("custom", {"event": "tool_start", "name": "calculator"}),
        ("custom", {"event": "tool_end", "name": "calculator", "output": "200"}),
        ("custom", {"event": "something_internal"}),
    ]
    assert feed(ChunkStream("c", "agent"), *events) == []
    chunks = feed(ChunkStream("c", "agent", agent_events=True), *events)
    assert [c["agent_event"]["event"] for c in chunks] == ["fallback", "tool_start", "tool_end"]
    assert all(c["choices"][0]["delta"] == {} for c in chunks)


def test_a_reset_after_tokens_ends_the_stream_with_an_error_chunk() -> None:
    stream = ChunkStream("c", "agent", agent_events=True)
    chunks = feed(
        stream, token("one two"), ("custom", {"event": "reset", "model": "m1"}), token("x")
    )
    assert chunks[-1]["error"]["code"] == "stream_reset"
    assert chunks[-1]["error"]["type"] == "server_error"
    assert set(chunks[-1]["error"]) == {"message", "type", "param", "code"}
    assert stream.ended and stream.reset and stream.error is None


def test_a_reset_before_any_token_is_no_error() -> None:
    stream = ChunkStream("c", "agent")
    assert feed(stream, ("custom", {"event": "reset", "model": "m1"})) == []
    assert not stream.ended


def test_a_run_error_is_an_error_chunk_and_kept() -> None:
    stream = ChunkStream("c", "agent")
    error = {"message": "every configured model failed", "code": "upstream_unavailable"}
    [chunk] = feed(stream, ("error", {**error, "status": 503}))
    assert chunk == {
        "error": {
            "message": "every configured model failed",
            "type": "server_error",
            "param": None,
            "code": "upstream_unavailable",
        }
    }
    assert stream.ended and stream.error is not None and not stream.started


def test_an_end_without_an_answer_is_an_error_chunk() -> None:
    stream = ChunkStream("c", "agent")
    [chunk] = feed(stream, ("end", {"status": "interrupted"}))
    assert chunk["error"]["code"] == "internal_error"
    assert stream.error is not None and stream.error["status"] == 500


def test_a_pause_for_approval_is_approval_required_even_with_an_older_turn() -> None:
    stream = ChunkStream("c", "agent", session_id="s1")
    pause = ("updates", {"__interrupt__": [{"value": {"kind": "approval"}}]})
    [chunk] = feed(stream, persisted(), pause, ("end", {"status": "success"}))
    assert chunk["error"]["code"] == "approval_required"
    assert stream.error is not None and stream.error["status"] == 409
    assert "session s1" in stream.error["message"]


# --- errors -------------------------------------------------------------------------


def ours(code: str, message: str = "m", details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": "r1"}
    if details is not None:
        error["details"] = details
    return {"error": error}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, ours("unauthorized"), (401, "invalid_request_error", None, "invalid_api_key")),
        (429, ours("rate_limited"), (429, "requests", None, "rate_limited")),
        (429, ours("budget_exceeded"), (429, "insufficient_quota", None, "budget_exceeded")),
        (
            404,
            ours("model_not_found", details={"param": "model"}),
            (404, "invalid_request_error", "model", "model_not_found"),
        ),
        (
            422,
            ours("validation_error", details=[{"loc": ["body", "messages", 0, "role"]}]),
            (400, "invalid_request_error", "messages.0.role", "validation_error"),
        ),
        (409, ours("session_busy"), (409, "invalid_request_error", None, "session_busy")),
        (503, ours("upstream_unavailable"), (503, "server_error", None, "upstream_unavailable")),
        (403, ours("loopback_only"), (403, "permission_error", None, "loopback_only")),
        (500, {"detail": "x"}, (500, "server_error", None, "error")),
    ],
)
def test_openai_error_shape_and_status(
    status: int, body: dict[str, Any], expected: tuple[int, str, str | None, str]
) -> None:
    new_status, new_body = openai_error(status, body)
    error = new_body["error"]
    assert (new_status, error["type"], error["param"], error["code"]) == expected
    assert set(error) == {"message", "type", "param", "code"}


async def _drive(path: str, status: int, body: bytes, content_type: bytes) -> list[dict]:
    """Runs the middleware around an app that answers `body` in two parts."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", content_type), (b"retry-after", b"7")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        half = len(body) // 2
        await send({"type": "http.response.body", "body": body[:half], "more_body": True})
        await send({"type": "http.response.body", "body": body[half:]})

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": path, "method": "POST", "headers": []}
    await OpenAIErrorShape(app)(scope, receive, send)
    return sent


async def test_middleware_rewrites_v1_json_errors_and_keeps_headers() -> None:
    payload = json.dumps(ours("rate_limited", "slow down")).encode()
    sent = await _drive("/v1/chat/completions", 429, payload, b"application/json")
    start, body = sent
    headers = dict(start["headers"])
    assert start["status"] == 429 and headers[b"retry-after"] == b"7"
    assert json.loads(body["body"]) == {
        "error": {"message": "slow down", "type": "requests", "param": None, "code": "rate_limited"}
    }
    assert headers[b"content-length"] == str(len(body["body"])).encode()


async def test_middleware_leaves_other_paths_successes_and_streams_alone() -> None:
    payload = json.dumps(ours("unauthorized")).encode()
    for path, status, kind in (
        ("/api/chat/message", 401, b"application/json"),
        ("/v1/chat/completions", 200, b"application/json"),
        ("/v1/chat/completions", 200, b"text/event-stream"),
    ):
        sent = await _drive(path, status, payload, kind)
        assert b"".join(m.get("body", b"") for m in sent[1:]) == payload
        assert len(sent) == 3


async def test_middleware_answers_an_unreadable_error_body_in_openai_shape() -> None:
    sent = await _drive("/v1/models", 502, b"not json", b"application/json")
    assert sent[0]["status"] == 502
    assert json.loads(sent[1]["body"])["error"]["type"] == "server_error"


# --- the relay: an early failure is an HTTP error, a slow start streams ----------------


async def events_of(*events: tuple[str, Any]) -> AsyncIterator[RunEvent]:
    for n, (name, data) in enumerate(events):
        yield RunEvent(f"1-{n}", name, data)


async def test_relay_opening_stops_at_the_first_text_and_rest_follows() -> None:
    relay = Relay(
        events_of(
            ("metadata", {}),
            ("custom", {"event": "tool_start", "name": "calculator"}),
            token("10"),
            token(" = 200"),
            persisted(),
            ("end", {}),
        ),
        ChunkStream("c", "agent", agent_events=True),
    )
    opening = await relay.opening(5.0)
    rest = [batch async for batch in relay.rest()]
    chunks = [c for batch in opening + rest for c in batch]
    assert [c.get("agent_event", {}).get("event") for c in chunks[:1]] == ["tool_start"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "10 = 200"
    assert [b async for b in relay.rest()] == []  # drained
    await relay.aclose()


async def test_relay_raises_a_failure_before_any_text_with_its_status() -> None:
    error = {"message": "every configured model failed", "code": "upstream_unavailable"}
    relay = Relay(
        events_of(
            ("custom", {"event": "fallback", "from": "m1", "to": "m2"}),
            ("error", {**error, "status": 503}),
            ("end", {}),
        ),
        ChunkStream("c", "agent", agent_events=True),
    )
    with pytest.raises(RunFailed) as caught:
        await relay.opening(5.0)
    assert (caught.value.status_code, caught.value.code) == (503, "upstream_unavailable")


async def test_relay_a_slow_start_streams_and_a_late_failure_is_a_chunk() -> None:
    go_on = asyncio.Event()

    async def slow() -> AsyncIterator[RunEvent]:
        yield RunEvent("1-0", "metadata", {})
        await go_on.wait()  # the model is slow: nothing until the opening gave up
        yield RunEvent("1-1", "error", {"message": "late", "code": "x"})

    relay = Relay(slow(), ChunkStream("c", "agent"))
    assert await relay.opening(0.05) == []
    go_on.set()
    [[chunk]] = [batch async for batch in relay.rest()]
    assert chunk["error"]["code"] == "x"
    await relay.aclose()


async def test_relay_turns_a_broken_event_read_into_an_error() -> None:
    async def broken() -> AsyncIterator[RunEvent]:
        yield RunEvent("1-0", "metadata", {})
        raise StoreUnavailable()

    with pytest.raises(RunFailed) as caught:
        await Relay(broken(), ChunkStream("c", "agent")).opening(5.0)
    assert (caught.value.status_code, caught.value.code) == (503, "store_unavailable")
