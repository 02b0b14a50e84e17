"""One structured log line and the HTTP metrics per request.

Pure ASGI so it sees streaming responses end (and their real duration) without
wrapping them in tasks. The route label is the matched route's template
(`/api/chat/history/{session_id}`), never the raw path, so metric cardinality
stays bounded; principal and session ids come from `scope["state"]`, where
the dependencies put them.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_server.observability.logging import get_logger
from agent_server.observability.metrics import Metrics

log = get_logger("agent_server.access")
UNMATCHED = "unmatched"


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = _route(scope)
                self.metrics.http_latency.labels(scope["method"], route).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = _route(scope)
            self.metrics.http_requests.labels(scope["method"], route, str(status)).inc()
            state = scope.get("state") or {}
            log.info(
                "request",
                method=scope["method"],
                route=route,
                path=scope.get("path"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                principal=state.get("principal"),
                session_id=state.get("session_id"),
                run_id=state.get("run_id"),
            )


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED
