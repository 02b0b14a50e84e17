"""Per-principal request rate limits and daily token budgets.

Built on the `limits` library (sliding-window counters for requests, a fixed
window for the budget), in Redis when configured so every replica counts
against the same numbers, in-process otherwise. Limits are a guard, not a
source of truth: if Redis is unreachable they fail open and log, and the state
store's own failure answers the request with 503.
"""

from __future__ import annotations

import logging
import time

from limits import RateLimitItemPerDay, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter
from redis.exceptions import RedisError

from agent_server.config import Settings
from agent_server.errors import BudgetExceeded, RateLimited

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


class TokenBudget:
    """An optional number of tokens per principal per day (from first use)."""

    def __init__(self, storage: Storage, tokens_per_day: int) -> None:
        self._limiter = FixedWindowRateLimiter(storage)
        self._item = RateLimitItemPerDay(tokens_per_day)

    async def check(self, principal: str) -> None:
        try:
            if await self._limiter.test(self._item, "tokens", principal):
                return
            stats = await self._limiter.get_window_stats(self._item, "tokens", principal)
        except (RedisError, OSError) as exc:
            log.warning("token budget unavailable, letting the request through: %s", exc)
            return
        raise BudgetExceeded(
            f"the daily budget of {self._item.amount} tokens is spent",
            retry_after=stats.reset_time - time.time(),
        )

    async def spend(self, principal: str, tokens: int) -> None:
        if tokens <= 0:
            return
        try:
            await self._limiter.hit(self._item, "tokens", principal, cost=tokens)
        except (RedisError, OSError) as exc:
            log.warning("could not record token spend: %s", exc)
