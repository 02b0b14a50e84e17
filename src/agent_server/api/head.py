"""`HEAD` answered like `GET`, as HTTP requires (RFC 9110 §9.3.2).

FastAPI's `APIRoute` registers only the methods it is given, so every GET route
answers HEAD with 405 (Starlette's own `Route` adds HEAD, FastAPI's doesn't).
Adding HEAD to each route would put a duplicate `head` operation per path into
the OpenAPI schema; instead this middleware hands the app a copy of the scope
whose method is GET.

The body is not stripped here: the server (uvicorn) keeps its own scope, still
HEAD, and drops the body itself while sending the headers GET would have had,
`Content-Length` included. Registered innermost, so the access log, request id
and security headers still see the original HEAD. Pure ASGI rather than
`BaseHTTPMiddleware`, which breaks disconnect detection on SSE.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        # A shallow copy: `scope["state"]` stays shared, so what the routes put there
        # (principal, session id) still reaches the access log outside.
        inner: Scope = {**scope, "method": "GET"}

        def publish() -> None:
            """Hand back what the router added to the copy (`route`, `path_params`, …),
            as it would have on the original scope: the access log labels by route."""
            for key, value in inner.items():
                if key not in scope:
                    scope[key] = value

        async def publishing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                publish()
            await send(message)

        try:
            await self.app(inner, receive, publishing_send)
        finally:
            publish()
