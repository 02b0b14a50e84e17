"""Which models to skip for now, and until when.

A model is cooled down when it rate-limits us (for its Retry-After, or a default)
or fails `failure_threshold` times in a row (a small circuit breaker). In-process
by default; in Redis when configured so that replicas learn from each other.
Cooldowns are advisory: if Redis is unreachable we fail open (try the model)
rather than fail the turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class Cooldowns(Protocol):
    async def cooling(self, models: Sequence[str]) -> dict[str, float]:
        """Models still cooling down, with the epoch time each one's cooldown ends."""
        ...

    async def cool(self, model: str, seconds: float) -> None: ...

    async def record_failure(self, model: str) -> int:
        """Count one more consecutive failure; returns the count."""
        ...

    async def record_success(self, model: str) -> None: ...


class InMemoryCooldowns:
    def __init__(self, *, failure_window_seconds: float = 300.0) -> None:
        self._until: dict[str, float] = {}
        self._failures: dict[str, tuple[int, float]] = {}
        self._window = failure_window_seconds

    async def cooling(self, models: Sequence[str]) -> dict[str, float]:
        now = time.time()
        return {m: until for m in models if (until := self._until.get(m, 0.0)) > now}

    async def cool(self, model: str, seconds: float) -> None:
        self._until[model] = max(self._until.get(model, 0.0), time.time() + seconds)

    async def record_failure(self, model: str) -> int:
        now = time.time()
        count, first = self._failures.get(model, (0, now))
        if now - first > self._window:
            count, first = 0, now
        self._failures[model] = (count + 1, first)
        return count + 1

    async def record_success(self, model: str) -> None:
        self._failures.pop(model, None)


class RedisCooldowns:
    """Keys: `{prefix}:cooldown:{model}` holds the end time (value) and expires then
    (PX); `{prefix}:failures:{model}` counts consecutive failures (expires after the
    failure window). Model ids are opaque strings inside the key.

    What the keys said is remembered for `cache_seconds` (1 s): reading them before
    every model call and deleting the failure count after every success cost two
    round trips on the way to each first token, for state that changes rarely. A
    cooldown set by another replica is therefore honoured here up to that long
    later (ours apply at once), and a success resets the shared failure count only
    when a failure was counted since we last looked.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        prefix: str = "agent",
        failure_window_seconds: float = 300.0,
        cache_seconds: float = 1.0,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._window_ms = int(failure_window_seconds * 1000)
        self._cache_seconds = cache_seconds
        self._seen: dict[str, _Seen] = {}

    def _cooldown_key(self, model: str) -> str:
        return f"{self._prefix}:cooldown:{model}"

    def _failure_key(self, model: str) -> str:
        return f"{self._prefix}:failures:{model}"

    async def _refresh(self, models: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for model in models:
                pipe.get(self._cooldown_key(model))
                pipe.get(self._failure_key(model))
            values = await pipe.execute()
        fetched = time.monotonic()
        for i, model in enumerate(models):
            until, failures = values[2 * i], values[2 * i + 1]
            self._seen[model] = _Seen(
                fetched, float(until) if until is not None else 0.0, int(failures or 0)
            )

    async def cooling(self, models: Sequence[str]) -> dict[str, float]:
        if not models:
            return {}
        stale_before = time.monotonic() - self._cache_seconds
        stale = [m for m in models if (s := self._seen.get(m)) is None or s.at < stale_before]
        if stale:
            try:
                await self._refresh(stale)
            except RedisError as exc:
                log.warning("cooldown lookup failed, trying every model: %s", type(exc).__name__)
                return {}
        now = time.time()
        result: dict[str, float] = {}
        for model in models:
            seen = self._seen.get(model)
            if seen is not None and seen.until > now:
                result[model] = seen.until
        return result

    def _note(self, model: str, *, until: float | None = None, failures: int | None = None) -> None:
        seen = self._seen.get(model) or _Seen(time.monotonic(), 0.0, 0)
        self._seen[model] = _Seen(
            seen.at,
            seen.until if until is None else max(seen.until, until),
            seen.failures if failures is None else failures,
        )

    async def cool(self, model: str, seconds: float) -> None:
        until = time.time() + seconds
        self._note(model, until=until)  # this replica stops using it at once
        try:
            await self._redis.set(
                self._cooldown_key(model), repr(until), px=max(int(seconds * 1000), 1)
            )
        except RedisError as exc:
            log.warning("could not share cooldown of %s: %s", model, type(exc).__name__)

    async def record_failure(self, model: str) -> int:
        key = self._failure_key(model)
        try:
            count = int(await self._redis.incr(key))
            if count == 1:  # the window starts with the first failure
                await self._redis.pexpire(key, self._window_ms)
        except RedisError as exc:
            log.warning("could not count failure of %s: %s", model, type(exc).__name__)
            count = 1
        self._note(model, failures=count)
        return count

    async def record_success(self, model: str) -> None:
        seen = self._seen.get(model)
        if seen is not None and seen.failures == 0:
            return  # nothing to reset as far as we know (see the class docstring)
        try:
            await self._redis.delete(self._failure_key(model))
            self._note(model, failures=0)
        except RedisError as exc:
            log.warning("could not reset failures of %s: %s", model, type(exc).__name__)


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the keys of one model said, and when (monotonic) we read them."""

    at: float
    until: float
    failures: int
