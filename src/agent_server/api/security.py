"""Security headers on every response, and the request header and body size limits.

All three are pure ASGI rather than `BaseHTTPMiddleware`, which wraps streaming
responses in extra tasks and breaks disconnect detection on SSE.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_server.api.errors import error_response
from agent_server.api.http_limits import HEADERS_TOO_LARGE, too_large_message, too_many_message

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "interest-cohort=()",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
"""JSON and event streams need nothing; the docs pages (/docs, /redoc) load
their own scripts and keep FastAPI's defaults."""


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = scope.get("path", "").startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if is_api:
                    headers.setdefault("Content-Security-Policy", API_CSP)
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


PAYLOAD_TOO_LARGE = "payload_too_large"


class BodyLimitMiddleware:
    """413 for request bodies over `max_bytes`, in our JSON error shape.

    Starlette's own limiter answers a too-large Content-Length with plain text;
    clients get one error format, so this refuses by header up front and counts
    streamed (chunked) bodies as they arrive, raising a 413 `HTTPException` into
    the route (FastAPI re-raises those from body parsing; anything else would
    become a 400), where the HTTP error handler shapes the reply.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(413, PAYLOAD_TOO_LARGE, self._message())
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"


class HeaderLimitMiddleware:
    """431 `headers_too_large` for requests over `MAX_HEADERS` or `MAX_HEADER_BYTES`.

    The same limits `BoundedHttpToolsProtocol` enforces in the parser, checked again
    on the parsed head so they hold under any ASGI server (there, a huge head has
    already been buffered: this bounds what the app does with it, not the memory).
    The size counts each header as `name: value\r\n` plus the request target.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_headers: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_headers = max_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            message = self._violation(scope)
            if message is not None:
                response = error_response(431, HEADERS_TOO_LARGE, message)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _violation(self, scope: Scope) -> str | None:
        headers = scope.get("headers") or ()
        if len(headers) > self.max_headers:
            return too_many_message(self.max_headers)
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        size += sum(len(name) + len(value) + 4 for name, value in headers)
        if size > self.max_bytes:
            return too_large_message(self.max_bytes)
        return None
