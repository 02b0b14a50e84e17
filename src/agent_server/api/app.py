"""`create_app(settings)`: the only place that turns settings into running objects.

The lifespan builds resources, the checkpointer, the graph, auth, limits, locks
and the chat service once, keeps them on `app.state`, and closes them on
shutdown. It also refuses to start on a reachable address with no API keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from agent_server import __version__
from agent_server.api import agent_protocol, openai
from agent_server.api.access_log import AccessLogMiddleware
from agent_server.api.agent_protocol.builtin import Assistants
from agent_server.api.auth import Authenticator
from agent_server.api.deps import get_principal
from agent_server.api.errors import install_error_handlers
from agent_server.api.head import HeadAsGetMiddleware
from agent_server.api.limits import RequestLimiter, limits_storage
from agent_server.api.request_id import is_safe_request_id
from agent_server.api.rest import documents, health, messages, models, sessions, tools
from agent_server.api.rest.schemas import ErrorResponse
from agent_server.api.security import (
    BodyLimitMiddleware,
    HeaderLimitMiddleware,
    SecurityHeadersMiddleware,
)
from agent_server.api.web import router as web
from agent_server.config import Settings
from agent_server.gc_tuning import tune_gc
from agent_server.graph.builder import build_graph
from agent_server.llm.health import startup_check
from agent_server.observability.logging import configure_logging, get_logger
from agent_server.observability.metrics import Metrics
from agent_server.persistence.api_keys import ApiKeyRepository
from agent_server.persistence.checkpointer import open_checkpointer
from agent_server.persistence.instrumented import InstrumentedSaver
from agent_server.persistence.redis_time import RedisTimeMiddleware
from agent_server.resources import build_resources
from agent_server.runs.budget import token_budget
from agent_server.runs.core import open_run_core

log = get_logger(__name__)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed JSON body"),
    401: _error("Missing or invalid API key"),
    403: _error("No API keys exist and the request did not arrive on loopback (`loopback_only`)"),
    413: _error("Request body too large"),
    422: _error("Invalid request (`validation_error`, `invalid_model`, `invalid_tools`)"),
    431: _error("Request headers too large or too many (`headers_too_large`)"),
}
"""Errors any /api route can answer, documented with the one error shape we send."""

CORS_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"]
CORS_HEADERS = [
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "X-Request-ID",
    "X-Auth-Scheme",  # Studio, Agent Chat UI
    "Last-Event-ID",  # rejoining a run's stream
    "X-Session-ID",  # /v1: continue a session
]
CORS_EXPOSE = [
    "X-Request-ID",
    "Retry-After",
    "Content-Location",  # the run id of a new run (useStream's onRunCreated)
    "Location",  # where to rejoin a run's stream
    "X-Pagination-Total",
    "X-Pagination-Next",
    "X-Session-ID",  # /v1: the session a request started or continued
    "X-Model-Used",
    "X-Fallbacks",
    "X-Degraded",
]
"""CORS for browser clients of the APIs (`AGENT-PROTOCOL.md` §6; /v1's agent headers)."""


def create_app(settings: Settings | None = None, *, own_process: bool = False) -> FastAPI:
    """`own_process`: the app is the process's only tenant (`agent-server serve`), so
    it may tune process-wide things such as the garbage collector once it is up."""
    settings = settings or Settings()
    configure_logging(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = build_resources(settings, metrics=metrics)
        try:
            await resources.prepare()
            auth = Authenticator(settings, ApiKeyRepository(resources.engine))
            await auth.start(settings.host)
            storage = limits_storage(settings)
            budget = token_budget(settings, resources.redis)
            async with (
                open_checkpointer(settings, resources.redis) as saver,
                AsyncExitStack() as stack,
            ):
                checkpointer = InstrumentedSaver(saver, metrics.checkpointer_latency)
                graph = build_graph(resources.deps, checkpointer=checkpointer)
                core = await stack.enter_async_context(
                    open_run_core(
                        resources,
                        graph=graph,
                        checkpointer=checkpointer,
                        metrics=metrics,
                        budget=budget,
                    )
                )
                app.state.core = core
                app.state.runs, app.state.threads = core.runs, core.threads
                app.state.agent_protocol = agent_protocol.AgentProtocol(
                    Assistants({"agent": graph}), core.threads, core.runs
                )
                app.state.settings = settings
                app.state.resources = resources
                app.state.auth = auth
                app.state.limiter = RequestLimiter(storage, settings.rate_limit_per_minute)
                app.state.service = core.turns
                if settings.offline_only:
                    log.warning("OPENROUTER_API_KEY is not set: answering with the offline model")
                else:  # in the background: one warning per chain entry that will not answer
                    stack.callback(asyncio.create_task(startup_check(settings)).cancel)
                stack.push_async_callback(resources.deps.models.aclose)
                if own_process:
                    tune_gc(settings.gc_gen0_threshold)
                yield
        finally:
            await resources.aclose()

    app = FastAPI(
        title="agent-server",
        version=__version__,
        description="LLM agent backend: LangGraph state machine behind a thin HTTP API.",
        lifespan=lifespan,
    )
    # Innermost: everything outside it still sees the original HEAD.
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        HeaderLimitMiddleware,
        max_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSE,
            # Chrome's Private Network Access: the hosted Studio page reaching a
            # local server sends `Access-Control-Request-Private-Network: true`.
            allow_private_network=True,
            max_age=600,
        )
    # Every request's Redis calls together wait at most this long (a hung Redis → 503).
    app.add_middleware(RedisTimeMiddleware, seconds=settings.redis_request_timeout_seconds)
    # Outside every layer that can answer with an error, so /v1 errors all leave in
    # OpenAI's shape.
    app.add_middleware(openai.OpenAIErrorShape)
    app.add_middleware(AccessLogMiddleware, metrics=metrics)
    app.add_middleware(
        CorrelationIdMiddleware, header_name="X-Request-ID", validator=is_safe_request_id
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    authenticated = [Depends(get_principal)]
    for module in (sessions, messages, documents, tools, models):
        app.include_router(module.router, dependencies=authenticated, responses=API_ERRORS)
    app.include_router(health.router)
    # The LangGraph Platform API at the root (Studio, langgraph-sdk, RemoteGraph).
    for router in agent_protocol.AUTHENTICATED:
        app.include_router(router, dependencies=authenticated, responses=API_ERRORS)
    for router in agent_protocol.OPEN:
        app.include_router(router)
    for router in openai.ROUTERS:
        app.include_router(router)
    web.install(app)  # the chat page at / and its assets under /static/
    return app
