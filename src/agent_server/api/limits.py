"""Per-principal request rate limits (token budgets: `runs/budget.py`).

Request rates use the `limits` library (sliding-window counters), in Redis when
configured, so every replica counts against the same numbers, in-process otherwise.
Limits are a guard, not a source of truth: if Redis is unreachable they fail open
and log, and the state store's own failure answers the request with 503.
"""

from __future__ import annotations

import logging
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.exceptions import RedisError

from agent_server.config import Settings
from agent_server.errors import RateLimited
from agent_server.persistence.redis_time import BoundedConnection, redis_retry

log = logging.getLogger(__name__)


def limits_storage(settings: Settings) -> Storage:
    if settings.redis_url and settings.redis_cluster:
        return RedisClusterStorage(
            "async+redis+cluster://" + settings.redis_url.split("://", 1)[1],
            implementation="redispy",
            key_prefix=f"{settings.redis_key_prefix}:limits",
        )
    if settings.redis_url:
        return RedisStorage(
            f"async+{settings.redis_url}",
            implementation="redispy",
            key_prefix=f"{settings.redis_key_prefix}:limits",
            socket_connect_timeout=1,
            socket_timeout=2,
            # Like the app's client: no retried timeouts, and the request's Redis time.
            connection_class=BoundedConnection,
            retry=redis_retry(),
        )
    return MemoryStorage()


class RequestLimiter:
    """`RATE_LIMIT_PER_MINUTE` message requests per principal."""

    def __init__(self, storage: Storage, per_minute: int) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._item = RateLimitItemPerMinute(per_minute)

    async def hit(self, principal: str) -> None:
        try:
            if await self._limiter.hit(self._item, "requests", principal):
                return
            stats = await self._limiter.get_window_stats(self._item, "requests", principal)
        except (RedisError, OSError) as exc:
            log.warning("rate limiter unavailable, letting the request through: %s", exc)
            return
        raise RateLimited(
            f"more than {self._item.amount} message requests per minute; slow down",
            retry_after=stats.reset_time - time.time(),
        )
