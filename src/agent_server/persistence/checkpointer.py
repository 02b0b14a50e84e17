"""The single seam that decides where hot graph state (checkpoints) lives.

`REDIS_URL` set → our `AsyncRedisSaver` on the app's Redis client, with the
session TTL sliding on every write and growth bounded to `CHECKPOINTS_PER_THREAD`;
unset → LangGraph's `AsyncSqliteSaver` on a file under `./data/`, bounded to the
same `CHECKPOINTS_PER_THREAD` (`BoundedSqliteSaver`) and behind
`LatestCheckpointCache` (this process is then its only writer).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from agent_server.config import Settings
from agent_server.persistence.cached_saver import LatestCheckpointCache
from agent_server.persistence.redis_saver import AsyncRedisSaver
from agent_server.persistence.sqlite_saver import BoundedSqliteSaver

log = logging.getLogger(__name__)


@asynccontextmanager
async def open_checkpointer(
    settings: Settings, redis: Redis | RedisCluster | None = None
) -> AsyncIterator[BaseCheckpointSaver]:
    """Open the configured saver for the lifetime of the app and close it after."""
    if redis is not None:
        saver = AsyncRedisSaver(
            redis,
            ttl_seconds=settings.session_ttl_seconds,
            max_checkpoints_per_thread=settings.checkpoints_per_thread,
            key_prefix=settings.redis_key_prefix,
            known_latest_bytes=int(settings.redis_known_checkpoints_mb * 1024 * 1024),
        )
        try:
            await saver.setup()
        except RedisError as exc:  # start anyway: /readyz reports it, requests get 503
            log.warning("Redis unreachable at start-up: %s", type(exc).__name__)
        yield saver
        return
    settings.checkpoint_db_path.parent.mkdir(parents=True, exist_ok=True)
    async with BoundedSqliteSaver.open(
        settings.checkpoint_db_path, keep=settings.checkpoints_per_thread
    ) as saver:
        yield LatestCheckpointCache(saver)
