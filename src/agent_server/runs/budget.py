"""Daily token budgets per principal: reserve before a turn, settle after it.

Reserve-then-settle because a check followed by a later charge let 20 parallel
requests all pass; `limits` cannot express that, so it is a small Lua script of our
own, in Redis when configured (every replica counts against the same numbers),
in-process otherwise. A budget is a guard, not a source of truth: if Redis is
unreachable it fails open and logs. Every surface's turns and runs go through it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from agent_server.config import Settings
from agent_server.errors import BudgetExceeded

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens set aside for one turn, to be settled with what it really used."""

    principal: str
    tokens: int


def estimate_tokens(*texts: str) -> int:
    """A prompt's size in tokens, roughly (4 characters a token), for reserving: the
    real count comes back from the model and settles the reservation."""
    return math.ceil(sum(len(text) for text in texts) / 4)


class TokenBudget(Protocol):
    """`DAILY_TOKEN_BUDGET` tokens per principal per day (the day starts at first use).

    A turn reserves its estimate (prompt + `max_tokens`) before any model call and
    settles it with the real usage afterwards, so parallel requests cannot all slip
    under the limit: the reservation and the check are one atomic step."""

    async def reserve(self, principal: str, tokens: int) -> Reservation | None:
        """Set `tokens` aside or raise `BudgetExceeded`; None when the budget store
        is unreachable (fail open: the budget is a guard, not a source of truth)."""
        ...

    async def settle(self, reservation: Reservation, used: int) -> None: ...


DAY_SECONDS = 86_400


def _exceeded(limit: int, used: int, tokens: int, reset_in: float) -> BudgetExceeded:
    if tokens > limit:
        message = (
            f"this request may use up to {tokens} tokens (prompt estimate + max_tokens), "
            f"more than the daily budget of {limit}: lower max_tokens"
        )
    else:
        message = (
            f"the daily budget of {limit} tokens is spent ({used} used or reserved, "
            f"this request may use up to {tokens})"
        )
    return BudgetExceeded(message, retry_after=reset_in)


class LocalTokenBudget:
    """In-process budgets, for one server without Redis. No await between the check
    and the update, so it is atomic on the event loop."""

    def __init__(self, tokens_per_day: int) -> None:
        self._limit = tokens_per_day
        self._windows: dict[str, tuple[float, int]] = {}  # principal → (ends at, used)

    def _window(self, principal: str) -> tuple[float, int]:
        now = time.monotonic()
        ends, used = self._windows.get(principal, (0.0, 0))
        return (now + DAY_SECONDS, 0) if ends <= now else (ends, used)

    async def reserve(self, principal: str, tokens: int) -> Reservation | None:
        ends, used = self._window(principal)
        if used + tokens > self._limit:
            raise _exceeded(self._limit, used, tokens, ends - time.monotonic())
        self._windows[principal] = (ends, used + tokens)
        return Reservation(principal, tokens)

    async def settle(self, reservation: Reservation, used: int) -> None:
        ends, spent = self._window(reservation.principal)
        self._windows[reservation.principal] = (ends, max(0, spent + used - reservation.tokens))


_RESERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local tokens = tonumber(ARGV[1])
if used + tokens > tonumber(ARGV[2]) then
  return {0, used, redis.call('PTTL', KEYS[1])}
end
local total = redis.call('INCRBY', KEYS[1], tokens)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, total, redis.call('PTTL', KEYS[1])}
"""
"""Check and reserve in one step: `{prefix}:budget:{<principal>}` holds the tokens
used or reserved in the principal's current day and expires with it."""

_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if total < 0 then redis.call('SET', KEYS[1], 0, 'KEEPTTL') end
return total
"""
"""Replace a reservation with the real use; nothing when its day already ended."""


class RedisTokenBudget:
    """Budgets shared by every replica: one Lua script per reservation and one per
    settlement (single key, so Cluster-safe)."""

    def __init__(self, redis: Redis | RedisCluster, *, prefix: str, tokens_per_day: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._limit = tokens_per_day
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    def _key(self, principal: str) -> str:
        return f"{self._prefix}:budget:{{{principal}}}"

    async def reserve(self, principal: str, tokens: int) -> Reservation | None:
        try:
            ok, used, pttl = await self._reserve(
                keys=[self._key(principal)], args=[tokens, self._limit, DAY_SECONDS * 1000]
            )
        except (RedisError, OSError) as exc:
            log.warning("token budget unavailable, letting the request through: %s", exc)
            return None
        if not ok:
            reset_in = int(pttl) / 1000 if int(pttl) > 0 else DAY_SECONDS
            raise _exceeded(self._limit, int(used), tokens, reset_in)
        return Reservation(principal, tokens)

    async def settle(self, reservation: Reservation, used: int) -> None:
        delta = used - reservation.tokens
        if delta == 0:
            return
        try:
            await self._settle(keys=[self._key(reservation.principal)], args=[delta])
        except (RedisError, OSError) as exc:
            log.warning("could not settle a token reservation: %s", exc)


def token_budget(settings: Settings, redis: Redis | RedisCluster | None) -> TokenBudget | None:
    """The configured budget (None without `DAILY_TOKEN_BUDGET`), in Redis when there is one."""
    if settings.daily_token_budget is None:
        return None
    if redis is None:
        return LocalTokenBudget(settings.daily_token_budget)
    return RedisTokenBudget(
        redis, prefix=settings.redis_key_prefix, tokens_per_day=settings.daily_token_budget
    )
