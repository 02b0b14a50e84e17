"""`create_app(settings)`: the only place that turns settings into running objects.

The lifespan builds resources, the checkpointer, the graph and the chat service
once, keeps them on `app.state`, and closes them on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI

from agent_server import __version__
from agent_server.api.errors import install_error_handlers
from agent_server.api.locks import SessionLocks
from agent_server.api.routes import documents, health, messages, models, sessions, tools
from agent_server.api.service import ChatService
from agent_server.config import Settings
from agent_server.graph.builder import build_graph
from agent_server.persistence.checkpointer import open_checkpointer
from agent_server.resources import build_resources

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = build_resources(settings)
        try:
            await resources.prepare()
            async with open_checkpointer(settings) as checkpointer:
                graph = build_graph(resources.deps, checkpointer=checkpointer)
                app.state.settings = settings
                app.state.resources = resources
                app.state.service = ChatService(
                    graph=graph,
                    checkpointer=checkpointer,
                    deps=resources.deps,
                    locks=SessionLocks(),
                )
                if settings.offline_only:
                    log.warning("OPENROUTER_API_KEY is not set: answering with the offline model")
                yield
        finally:
            await resources.aclose()

    app = FastAPI(
        title="agent-server",
        version=__version__,
        description="LLM agent backend: LangGraph state machine behind a thin HTTP API.",
        lifespan=lifespan,
    )
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")
    install_error_handlers(app)
    for module in (sessions, messages, documents, tools, models, health):
        app.include_router(module.router)
    return app
