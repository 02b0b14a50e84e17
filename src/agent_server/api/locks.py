"""One run at a time per session.

Two runs interleaving on one thread would each read the other's half-written
checkpoint, so a second message while one runs gets 409 instead of queueing.
In-process locks serve one process; with Redis the lock is shared by every
replica, expires if its holder dies (`LOCK_TTL_SECONDS`), and is kept alive by
a heartbeat while the run lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from typing import Protocol

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

log = logging.getLogger(__name__)


class SessionLocks(Protocol):
    async def try_acquire(self, session_id: str) -> bool: ...

    async def release(self, session_id: str) -> None: ...


class LocalSessionLocks:
    """Non-blocking try-locks keyed by session id, for a single process."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    async def try_acquire(self, session_id: str) -> bool:
        # No await between the check and the add: atomic on the event loop.
        if session_id in self._held:
            return False
        self._held.add(session_id)
        return True

    async def release(self, session_id: str) -> None:
        self._held.discard(session_id)


class RedisSessionLocks:
    """`{prefix}:lock:{<session_id>}` — redis-py's Lock (SET NX PX + token-checked
    release), extended every third of its TTL while held."""

    def __init__(
        self, redis: Redis | RedisCluster, *, prefix: str, ttl_seconds: float = 30.0
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._held: dict[str, tuple[Lock, asyncio.Task[None]]] = {}

    async def try_acquire(self, session_id: str) -> bool:
        lock = self._redis.lock(
            f"{self._prefix}:lock:{{{session_id}}}", timeout=self._ttl, blocking=False
        )
        if not await lock.acquire():
            return False
        # A fresh context: the heartbeat outlives no request but must not draw on the
        # request's Redis time (persistence/redis_time.py), only its own socket timeout.
        heartbeat = asyncio.create_task(
            self._heartbeat(lock), name=f"lock-{session_id}", context=contextvars.Context()
        )
        self._held[session_id] = (lock, heartbeat)
        return True

    async def _heartbeat(self, lock: Lock) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                await lock.reacquire()
            except (LockError, RedisError) as exc:
                log.warning("could not extend session lock %s: %s", lock.name, exc)

    async def release(self, session_id: str) -> None:
        held = self._held.pop(session_id, None)
        if held is None:
            return
        lock, heartbeat = held
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        try:
            await lock.release()
        except (LockError, RedisError) as exc:
            # Expired or Redis gone: the TTL frees it anyway.
            log.warning("could not release session lock %s: %s", lock.name, exc)
