"""A scriptable OpenAI-compatible chat-completions server for tests and benchmarks.

Real HTTP (uvicorn on a free loopback port), the real wire format (JSON and SSE,
streamed tool-call deltas, `usage`, `model`), and every way a provider fails:
429 with Retry-After, 5xx, stalls, connections dropped mid-stream, malformed
JSON, 401, 400 context-length, content filter, and any provider's real error
body (`fail("error", status=404, error_body={...})`), also inside a 200 (a JSON
body with `error` and no choices, or an SSE `data:` event carrying `error` after
some tokens: `fail("error_in_200", ...)`). Each model id has a queue of scripted
behaviours (consumed one per request) and a default for when the queue is empty.
Every request is recorded so tests can assert which models were tried and with
which parameters.

A fake can also play one server's quirks (`quirks`, see `QUIRKS`), require a key
(`api_key`), and list models at `GET /v1/models` (`served_models`), so several
fakes stand in for several providers.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import serve_in_thread

Kind = Literal[
    "text",
    "tool_call",
    "rate_limit",
    "server_error",
    "stall",
    "drop",
    "malformed",
    "auth",
    "context_length",
    "content_filter",
    "bad_request",
    "empty",
    "invalid_tool_call",
    "error",
    "error_in_200",
]

QUIRKS = {
    "reject_stream_options": "400 when the body has `stream_options`",
    "reject_parallel_tool_calls": "400 when the body has `parallel_tool_calls`",
    "null_content_500": "500 when an assistant message with tool calls has content null "
    "(llama.cpp's chat templates)",
    "repeat_tool_name": "the function name (and id) in every streamed tool-call delta "
    "(llama.cpp, ggml-org/llama.cpp#13774)",
}


@dataclass
class Behavior:
    """What the fake does for one request."""

    kind: Kind = "text"
    text: str = "Hello from the fake upstream."
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 500
    retry_after: str | None = None
    drop_after_tokens: int = 2
    stall_seconds: float = 30.0
    stall_after_tokens: int = 0
    first_token_latency: float = 0.0
    tokens_per_second: float | None = None
    cost: float | None = None
    served_model: str | None = None
    """Model name to report (OpenRouter may answer with a different one)."""
    error_body: dict[str, Any] | None = None
    """The whole JSON error body to send (`error` / `error_in_200`), as the provider does."""


def text(content: str = "Hello from the fake upstream.", **kw: Any) -> Behavior:
    return Behavior(kind="text", text=content, **kw)


def tool_call(name: str, args: dict[str, Any], **kw: Any) -> Behavior:
    return Behavior(kind="tool_call", tool_calls=[(name, args)], **kw)


def fail(kind: Kind, **kw: Any) -> Behavior:
    return Behavior(kind=kind, **kw)


@dataclass
class RecordedRequest:
    model: str
    stream: bool
    body: dict[str, Any]
    headers: dict[str, str]


def _words(content: str) -> list[str]:
    import re

    return re.findall(r"\s*\S+", content) or [content]


class FakeUpstream:
    """Scripts, records and serves; see module docstring."""

    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[Behavior]] = defaultdict(deque)
        self._defaults: dict[str, Behavior] = {}
        self.default = Behavior()
        self.quirks: set[str] = set()
        self.api_key: str | None = None
        """When set, every route answers 401 (OpenAI's body) to any other bearer token."""
        self.served_models: list[str] | None = None
        """What `GET /v1/models` lists; None = every model scripted or defaulted so far."""
        self.listing_requests: list[dict[str, str]] = []

    # --- scripting -------------------------------------------------------------

    def script(self, model: str, *behaviors: Behavior) -> None:
        self._scripts[model].extend(behaviors)

    def always(self, model: str, behavior: Behavior) -> None:
        self._defaults[model] = behavior

    def reset(self) -> None:
        self.requests.clear()
        self._scripts.clear()
        self._defaults.clear()
        self.quirks = set()
        self.api_key = None
        self.served_models = None
        self.listing_requests.clear()

    def models_tried(self) -> list[str]:
        return [r.model for r in self.requests]

    def _next(self, model: str) -> Behavior:
        queue = self._scripts.get(model)
        if queue:
            return queue.popleft()
        return self._defaults.get(model, self.default)

    # --- HTTP --------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/chat/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/models", self._models, methods=["GET"]),
            ]
        )

    def _unauthorized(self, request: Request) -> Response | None:
        if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        # OpenAI's 401 body.
        payload = {
            "error": {
                "message": "Incorrect API key provided.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        return JSONResponse(payload, status_code=401)

    async def _models(self, request: Request) -> Response:
        self.listing_requests.append({k.lower(): v for k, v in request.headers.items()})
        if (denied := self._unauthorized(request)) is not None:
            return denied
        ids = (
            self.served_models
            if self.served_models is not None
            else sorted({*self._scripts, *self._defaults})
        )
        data = [{"id": i, "object": "model", "created": 0, "owned_by": "fake"} for i in ids]
        return JSONResponse({"object": "list", "data": data})

    def _quirk_error(self, body: dict[str, Any]) -> Response | None:
        def bad(status: int, message: str) -> Response:
            payload = {"error": {"code": status, "message": message, "type": "server_error"}}
            return JSONResponse(payload, status_code=status)

        if "reject_stream_options" in self.quirks and "stream_options" in body:
            return bad(400, "Unrecognized request argument supplied: stream_options")
        if "reject_parallel_tool_calls" in self.quirks and "parallel_tool_calls" in body:
            return bad(400, "Unrecognized request argument supplied: parallel_tool_calls")
        if "null_content_500" in self.quirks:
            for message in body.get("messages", []):
                if message.get("tool_calls") and message.get("content") is None:
                    return bad(
                        500, "[json.exception.type_error.302] type must be string, but is null"
                    )
        return None

    async def _completions(self, request: Request) -> Response:
        body = await request.json()
        model = str(body.get("model"))
        stream = bool(body.get("stream"))
        self.requests.append(
            RecordedRequest(model, stream, body, {k.lower(): v for k, v in request.headers.items()})
        )
        if (denied := self._unauthorized(request)) is not None:
            return denied
        if (quirk := self._quirk_error(body)) is not None:
            return quirk
        behavior = self._next(model)
        if behavior.kind == "error_in_200" and not stream:
            return JSONResponse(behavior.error_body or {"error": {"code": 502, "message": "x"}})
        if (error := self._error_response(behavior)) is not None:
            return error
        if behavior.kind == "malformed" and not stream:
            return Response('{"id": "x", "choices": [{"message": ', media_type="application/json")
        if behavior.kind == "stall" and not stream:
            await asyncio.sleep(behavior.stall_seconds)
        if stream:
            return StreamingResponse(
                self._sse(model, body, behavior), media_type="text/event-stream"
            )
        if behavior.first_token_latency:
            await asyncio.sleep(behavior.first_token_latency)
        return JSONResponse(self._completion(model, body, behavior))

    @staticmethod
    def _error_response(behavior: Behavior) -> Response | None:
        def error(status: int, message: str, code: str | None = None, **headers: str) -> Response:
            payload = {"error": {"message": message, "type": "fake_error", "code": code}}
            return JSONResponse(payload, status_code=status, headers=headers)

        match behavior.kind:
            case "rate_limit":
                headers = {"retry-after": behavior.retry_after} if behavior.retry_after else {}
                return error(429, "Rate limit exceeded", "rate_limit_exceeded", **headers)
            case "server_error":
                return error(behavior.status, "Upstream exploded")
            case "auth":
                return error(401, "Invalid API key", "invalid_api_key")
            case "context_length":
                return error(
                    400,
                    "This model's maximum context length is 8192 tokens. However, your "
                    "messages resulted in 9000 tokens.",
                    "context_length_exceeded",
                )
            case "content_filter":
                return error(400, "Content rejected by the provider's policy", "content_filter")
            case "bad_request":
                return error(400, "Invalid parameter: temperature", "invalid_request_error")
            case "error":
                return JSONResponse(behavior.error_body or {}, status_code=behavior.status)
        return None

    def _usage(self, body: dict[str, Any], output: str, behavior: Behavior) -> dict[str, Any]:
        prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
        completion = len(output.split()) or 1
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if behavior.cost is not None:
            usage["cost"] = behavior.cost
        return usage

    def _completion(self, model: str, body: dict[str, Any], behavior: Behavior) -> dict[str, Any]:
        served = behavior.served_model or model
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = "stop"
        if behavior.kind == "empty":
            return {
                "id": "chatcmpl-empty",
                "object": "chat.completion",
                "model": served,
                "choices": [],
            }
        if behavior.kind == "invalid_tool_call":
            message["tool_calls"] = [
                {
                    "id": "call_broken",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": 10 *'},
                }
            ]
            return {
                "id": "chatcmpl-bad-args",
                "object": "chat.completion",
                "model": served,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            }
        if behavior.kind == "tool_call":
            message["tool_calls"] = [
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for name, args in behavior.tool_calls
            ]
            finish = "tool_calls"
            output = json.dumps([args for _, args in behavior.tool_calls])
        else:
            message["content"] = behavior.text
            output = behavior.text
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self._usage(body, output, behavior),
        }

    async def _sse(
        self, model: str, body: dict[str, Any], behavior: Behavior
    ) -> AsyncIterator[bytes]:
        served = behavior.served_model or model
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            payload = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": served,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        if behavior.first_token_latency:
            await asyncio.sleep(behavior.first_token_latency)
        interval = 1 / behavior.tokens_per_second if behavior.tokens_per_second else 0.0
        yield chunk({"role": "assistant", "content": ""})
        if behavior.kind == "empty":
            yield b"data: [DONE]\n\n"
            return
        if behavior.kind == "tool_call":
            repeat = "repeat_tool_name" in self.quirks
            for index, (name, args) in enumerate(behavior.tool_calls):
                arguments = json.dumps(args)
                call_id = f"call_{uuid.uuid4().hex[:12]}"
                third = max(len(arguments) // 3, 1)
                pieces = [arguments[:third], arguments[third : 2 * third], arguments[2 * third :]]
                for n, piece in enumerate(pieces):
                    call: dict[str, Any] = {"index": index, "function": {"arguments": piece}}
                    if n == 0 or repeat:
                        call.update(id=call_id, type="function")
                        call["function"] = {"name": name, "arguments": piece}
                    yield chunk({"tool_calls": [call]})
            finish, output = "tool_calls", json.dumps([a for _, a in behavior.tool_calls])
        else:
            output = behavior.text
            for n, word in enumerate(_words(behavior.text)):
                if behavior.kind == "drop" and n >= behavior.drop_after_tokens:
                    raise ConnectionResetError("fake upstream dropped the connection")
                if behavior.kind == "stall" and n >= behavior.stall_after_tokens:
                    await asyncio.sleep(behavior.stall_seconds)
                if behavior.kind == "malformed" and n >= behavior.drop_after_tokens:
                    yield b'data: {"id": "broken", "choices": [{"delta": \n\n'
                    return
                if behavior.kind == "error_in_200" and n >= behavior.drop_after_tokens:
                    # OpenRouter: a `data:` event with `error` (and a finish_reason "error").
                    event = {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": int(time.time()),
                        "model": served,
                        **(behavior.error_body or {"error": {"code": 502, "message": "x"}}),
                        "choices": [
                            {"index": 0, "delta": {"content": ""}, "finish_reason": "error"}
                        ],
                    }
                    yield f"data: {json.dumps(event)}\n\n".encode()
                    return
                yield chunk({"content": word})
                if interval:
                    await asyncio.sleep(interval)
            finish = "stop"
        yield chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            usage_chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": served,
                "choices": [],
                "usage": self._usage(body, output, behavior),
            }
            yield f"data: {json.dumps(usage_chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"


@contextmanager
def fake_upstream() -> Iterator[FakeUpstream]:
    """Serve a FakeUpstream on loopback; its `base_url` ends in `/v1`."""
    upstream = FakeUpstream()
    with serve_in_thread(upstream.app()) as url:
        upstream.base_url = f"{url}/v1"
        yield upstream


def main(argv: list[str] | None = None) -> int:
    """Serve a fixed text reply for any model in this process (benchmarks run it apart,
    so its CPU never competes with the client's event loop):

        python -m tests.support.fake_upstream --port 8001 \\
            --first-token-latency 0.05 --tokens-per-second 200 --words 50

    Streams one chunk per word (`--tokens-per-second` apart, after
    `--first-token-latency`); `GET /healthz` answers 200 once it is serving. Only the
    last 100 requests are kept, so a long benchmark does not grow its memory.
    """
    import argparse

    import uvicorn
    from starlette.responses import PlainTextResponse

    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--first-token-latency", type=float, default=0.0, help="seconds")
    parser.add_argument(
        "--tokens-per-second", type=float, default=0.0, help="0 = as fast as possible"
    )
    parser.add_argument("--words", type=int, default=50, help="words in the reply")
    args = parser.parse_args(argv)

    upstream = FakeUpstream()
    upstream.requests = deque(maxlen=100)  # type: ignore[assignment]
    vocabulary = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
    reply = " ".join(vocabulary[i % len(vocabulary)] for i in range(max(1, args.words)))
    upstream.default = text(
        reply,
        first_token_latency=args.first_token_latency,
        tokens_per_second=args.tokens_per_second or None,
    )

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[*upstream.app().routes, Route("/healthz", healthz)])
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
