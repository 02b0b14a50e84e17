"""Which models (and providers) to skip for now, until when, and why.

A model is cooled down when it rate-limits us (for its Retry-After, or a default),
fails `failure_threshold` times in a row (a small circuit breaker) or is not served
by its provider; a whole provider when it refuses connections or our key. Keys are
opaque strings chosen by the chain: `provider:model` for a chain entry, `provider`
for a provider, the bare model id for entries built without a provider. Each
cooldown remembers its cause, and the last failure of each key is kept (for
`GET /api/models`). In-process by default; in Redis when configured so that
replicas learn from each other. Cooldowns are advisory: if Redis is unreachable we
fail open (try the model) rather than fail the turn.
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


LAST_FAILURE_TTL_SECONDS = 86_400
"""How long the last failure of a model is remembered for `GET /api/models`."""


@dataclass(frozen=True, slots=True)
class KeyHealth:
    """What is known about one key: cooling until (epoch, 0 = not cooling) and why,
    and the last failure seen (class and epoch time), if any."""

    until: float = 0.0
    cause: str = ""
    last_reason: str | None = None
    last_at: float | None = None


class Cooldowns(Protocol):
    async def cooling(self, models: Sequence[str]) -> dict[str, float]:
        """Models still cooling down, with the epoch time each one's cooldown ends."""
        ...

    def cause(self, model: str) -> str:
        """Why `model` is cooling down, as last seen by `cooling()` ("" = unknown)."""
        ...

    async def cool(self, model: str, seconds: float, reason: str = "") -> None: ...

    async def record_failure(self, model: str, reason: str = "") -> int:
        """Count one more consecutive failure; returns the count."""
        ...

    async def record_success(self, model: str) -> None: ...

    async def health(self, models: Sequence[str]) -> dict[str, KeyHealth]:
        """Fresh state of each key (not cached: an operator is asking)."""
        ...


class InMemoryCooldowns:
    def __init__(self, *, failure_window_seconds: float = 300.0) -> None:
        self._until: dict[str, tuple[float, str]] = {}
        self._failures: dict[str, tuple[int, float]] = {}
        self._last: dict[str, tuple[str, float]] = {}
        self._window = failure_window_seconds

    async def cooling(self, models: Sequence[str]) -> dict[str, float]:
        now = time.time()
        return {m: until for m in models if (until := self._until.get(m, (0.0, ""))[0]) > now}

    def cause(self, model: str) -> str:
        return self._until.get(model, (0.0, ""))[1]

    async def cool(self, model: str, seconds: float, reason: str = "") -> None:
        until = time.time() + seconds
        if until > self._until.get(model, (0.0, ""))[0]:
            self._until[model] = (until, reason)
        if reason:
            self._last[model] = (reason, time.time())

    async def record_failure(self, model: str, reason: str = "") -> int:
        now = time.time()
        if reason:
            self._last[model] = (reason, now)
        count, first = self._failures.get(model, (0, now))
        if now - first > self._window:
            count, first = 0, now
        self._failures[model] = (count + 1, first)
        return count + 1

    async def health(self, models: Sequence[str]) -> dict[str, KeyHealth]:
        now = time.time()
        result = {}
        for model in models:
            until, cause = self._until.get(model, (0.0, ""))
            last = self._last.get(model)
            result[model] = KeyHealth(
                until if until > now else 0.0,
                cause if until > now else "",
                last[0] if last else None,
                last[1] if last else None,
            )
        return result

    async def record_success(self, model: str) -> None:
        self._failures.pop(model, None)


class RedisCooldowns:
    """Keys: `{prefix}:cooldown:{key}` holds the end time and the cause (`"<epoch>
    <cause>"`) and expires then (PX); `{prefix}:failures:{key}` counts consecutive
    failures (expires after the failure window); `{prefix}:last_failure:{key}` holds
    `"<epoch> <reason>"` of the latest failure (one day). Keys are opaque strings.

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

    def _last_key(self, model: str) -> str:
        return f"{self._prefix}:last_failure:{model}"

    async def _refresh(self, models: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for model in models:
                pipe.get(self._cooldown_key(model))
                pipe.get(self._failure_key(model))
            values = await pipe.execute()
        fetched = time.monotonic()
        for i, model in enumerate(models):
            until, failures = values[2 * i], values[2 * i + 1]
            end, cause = _split(until)
            self._seen[model] = _Seen(fetched, end, int(failures or 0), cause)

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

    def cause(self, model: str) -> str:
        seen = self._seen.get(model)
        return seen.cause if seen is not None else ""

    def _note(
        self,
        model: str,
        *,
        until: float | None = None,
        failures: int | None = None,
        cause: str | None = None,
    ) -> None:
        seen = self._seen.get(model) or _Seen(time.monotonic(), 0.0, 0)
        later = until is not None and until > seen.until
        self._seen[model] = _Seen(
            seen.at,
            until if later and until is not None else seen.until,
            seen.failures if failures is None else failures,
            cause if later and cause is not None else seen.cause,
        )

    async def cool(self, model: str, seconds: float, reason: str = "") -> None:
        until = time.time() + seconds
        self._note(model, until=until, cause=reason)  # this replica stops using it at once
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(
                    self._cooldown_key(model),
                    f"{until!r} {reason}".rstrip(),
                    px=max(int(seconds * 1000), 1),
                )
                if reason:
                    pipe.set(
                        self._last_key(model),
                        f"{time.time()!r} {reason}",
                        ex=LAST_FAILURE_TTL_SECONDS,
                    )
                await pipe.execute()
        except RedisError as exc:
            log.warning("could not share cooldown of %s: %s", model, type(exc).__name__)

    async def record_failure(self, model: str, reason: str = "") -> int:
        key = self._failure_key(model)
        try:
            count = int(await self._redis.incr(key))
            if count == 1:  # the window starts with the first failure
                await self._redis.pexpire(key, self._window_ms)
            if reason:
                await self._redis.set(
                    self._last_key(model), f"{time.time()!r} {reason}", ex=LAST_FAILURE_TTL_SECONDS
                )
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

    async def health(self, models: Sequence[str]) -> dict[str, KeyHealth]:
        if not models:
            return {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for model in models:
                    pipe.get(self._cooldown_key(model))
                    pipe.get(self._last_key(model))
                values = await pipe.execute()
        except RedisError as exc:
            log.warning("cooldown lookup failed: %s", type(exc).__name__)
            return {model: KeyHealth() for model in models}
        now = time.time()
        result = {}
        for i, model in enumerate(models):
            until, cause = _split(values[2 * i])
            last_at, last_reason = _split(values[2 * i + 1])
            cooling = until > now
            result[model] = KeyHealth(
                until if cooling else 0.0,
                cause if cooling else "",
                last_reason or None,
                last_at or None,
            )
        return result


def _split(value: bytes | str | None) -> tuple[float, str]:
    """`"<epoch> <text>"` (or a bare epoch, as written before causes were kept)."""
    if value is None:
        return 0.0, ""
    text = value.decode() if isinstance(value, bytes) else value
    number, _, rest = text.partition(" ")
    try:
        return float(number), rest
    except ValueError:
        return 0.0, ""


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the keys of one model said, and when (monotonic) we read them."""

    at: float
    until: float
    failures: int
    cause: str = ""
