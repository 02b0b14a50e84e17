"""Errors on `/v1` in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Why a middleware and not the exception handlers: errors reach the client from several
layers (the body-size and header limits, auth, validation, rate limits, the routes),
all of which answer in our shape `{"error": {"code", "message", "request_id"}}`. One
pure function turns that into OpenAI's, applied to every `/v1` error on its way out,
so the OpenAI SDKs raise their usual exceptions (`AuthenticationError` on 401,
`RateLimitError` on 429, `NotFoundError` on 404, `BadRequestError` on 400…), which they
choose by status.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v1/"
TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "requests"}
"""OpenAI's `type` by status (its 401s are `invalid_request_error` too); 5xx are
`server_error`, the rest `invalid_request_error`."""
TYPES_BY_CODE = {"budget_exceeded": "insufficient_quota"}
"""Where OpenAI's type depends on more than the status: a spent daily budget is its
quota error, not a request rate."""


def openai_error(status: int, ours: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Our error body → OpenAI's, and the status OpenAI would use (it answers invalid
    parameters with 400 where we say 422)."""
    error = ours.get("error") if isinstance(ours.get("error"), dict) else {}
    code = str(error.get("code") or "error")
    details = error.get("details")
    param = None
    if isinstance(details, dict):
        param = details.get("param")
    elif isinstance(details, list) and details and isinstance(details[0], dict):
        loc = [str(p) for p in details[0].get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
    if status == 422:
        status = 400
    if code == "unauthorized":
        code = "invalid_api_key"
    kind = TYPES_BY_CODE.get(code) or (
        "server_error" if status >= 500 else TYPES.get(status, "invalid_request_error")
    )
    body = {
        "error": {
            "message": str(error.get("message") or "error"),
            "type": kind,
            "param": param,
            "code": code,
        }
    }
    return status, body


class OpenAIErrorShape:
    """Rewrites JSON error responses of `/v1` routes (ASGI: works on any layer's
    response, buffered only when it is an error)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def relay(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                is_json = headers.get(b"content-type", b"").startswith(b"application/json")
                if message["status"] >= 400 and is_json:
                    start = message
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            try:
                status, body = openai_error(start["status"], json.loads(b"".join(chunks)))
            except ValueError:
                status, body = (
                    start["status"],
                    {
                        "error": {
                            "message": "error",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    },
                )
            payload = json.dumps(body).encode()
            headers = [
                (k, v)
                for k, v in start.get("headers") or []
                if k.lower() not in (b"content-length", b"content-type")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})

        await self.app(scope, receive, relay)
