"""Turns `Settings` into the long-lived objects the graph and the API share.

The app lifespan and `graphs/agent.py` (LangGraph Studio) both build them here,
so the two entry points cannot drift apart. Construction does no I/O; schemas
are created by `prepare()` (or lazily on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from redis.asyncio import Redis, RedisCluster
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_server.config import Settings
from agent_server.graph.state import AgentDeps
from agent_server.llm import build_model_chain
from agent_server.llm.cooldowns import InMemoryCooldowns, RedisCooldowns
from agent_server.observability.metrics import Metrics
from agent_server.persistence import migrate
from agent_server.persistence.db import create_engine
from agent_server.persistence.documents import DocumentStore
from agent_server.persistence.redis_time import BoundedConnection, redis_retry
from agent_server.persistence.repository import TranscriptRepository
from agent_server.tools import build_tool_registry

REDIS_TIMEOUT_SECONDS = 2.0
HTTP_USER_AGENT = "agent-server/0.1 (+https://github.com/agent-server)"


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    knowledge_engine: AsyncEngine
    http: httpx.AsyncClient
    transcript: TranscriptRepository
    documents: DocumentStore
    deps: AgentDeps
    redis: Redis | RedisCluster | None = None

    async def prepare(self) -> None:
        if self.settings.db_auto_migrate:
            await self.transcript.create_schema()
        else:
            current = await migrate.current_revision(self.engine)
            if current != migrate.HEAD_REVISION:
                raise RuntimeError(
                    f"database schema is at {current or 'nothing'}, not "
                    f"{migrate.HEAD_REVISION}: run `agent-server db upgrade` "
                    "(or set DB_AUTO_MIGRATE=true)"
                )
            self.transcript.mark_schema_ready()
        await self.documents.create_schema()
        if self.settings.knowledge_seed:
            await self.documents.load_seed_documents()

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.transcript.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.knowledge_engine is not self.engine:
            await self.knowledge_engine.dispose()
        await self.engine.dispose()


def connect_redis(settings: Settings) -> Redis | RedisCluster | None:
    """The app's one Redis client (no I/O until first use). Raw bytes replies
    (the checkpointer stores serialized values) and short timeouts: when Redis is
    down, requests get a quick 503, never a hang."""
    if not settings.redis_url:
        return None
    options: dict[str, Any] = {
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
        "retry": redis_retry(),
        "max_connections": settings.redis_max_connections,
    }
    if settings.redis_cluster:
        # RedisCluster builds its connections from a fixed class: there the socket
        # timeout alone bounds each call (no per-request budget).
        return RedisCluster.from_url(settings.redis_url, **options)
    # Each read and write also draws on the request's Redis time (redis_time.py).
    return Redis.from_url(
        settings.redis_url,
        health_check_interval=30,
        connection_class=BoundedConnection,
        **options,
    )


def build_resources(settings: Settings, *, metrics: Metrics | None = None) -> Resources:
    settings.ensure_data_dirs()
    engine = create_engine(settings.database_url)
    # FTS5 is SQLite's: share the transcript's file when it is SQLite, else use our own.
    knowledge_engine = (
        engine
        if settings.database_is_sqlite
        else create_engine(f"sqlite+aiosqlite:///{settings.knowledge_db_path}")
    )
    http = httpx.AsyncClient(headers={"User-Agent": HTTP_USER_AGENT}, follow_redirects=True)
    transcript = TranscriptRepository(engine)
    metrics = metrics or Metrics()
    redis = connect_redis(settings)
    cooldowns = (
        RedisCooldowns(redis, prefix=settings.redis_key_prefix)
        if redis is not None
        else InMemoryCooldowns()
    )
    documents = DocumentStore(knowledge_engine)
    deps = AgentDeps(
        settings=settings,
        models=build_model_chain(settings, cooldowns=cooldowns, metrics=metrics),
        tools=build_tool_registry(settings, http_client=http, documents=documents),
        transcript=transcript,
        metrics=metrics,
    )
    return Resources(settings, engine, knowledge_engine, http, transcript, documents, deps, redis)
