"""The REST turn's lock on a session: the thread's slot in the `RunStore`.

A REST turn and an Agent Protocol run on one session must not interleave, so both
take the same slot: `take` costs what the old session lock did (one `SET NX PX`
with Redis), and `free` hands the slot to the first run queued behind the turn
(`enqueue`), which `handoff` then starts. The same mechanism keys the lock of an
idempotent request that has no session yet (`request:<turn id>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from agent_server.runs.store import RunStore

log = logging.getLogger(__name__)

Handoff = Callable[[str, str | None], Awaitable[None]]


class SlotLocks:
    """`try_acquire(name)` / `release(name)` over the run store's slots."""

    def __init__(
        self, store: RunStore, *, heartbeat_seconds: float | None, handoff: Handoff
    ) -> None:
        self._store = store
        self._interval = heartbeat_seconds
        self._handoff = handoff
        self._held: dict[str, tuple[str, asyncio.Task[None] | None]] = {}

    async def try_acquire(self, name: str) -> bool:
        holder = f"turn-{uuid.uuid4()}"
        if not await self._store.take(name, holder):
            return False
        beat = None
        if self._interval is not None:
            # A fresh context: the heartbeat must not draw on the request's Redis time
            # (persistence/redis_time.py), only its own socket timeout.
            beat = asyncio.create_task(
                self._beat(name, holder), name=f"slot-{name}", context=contextvars.Context()
            )
        self._held[name] = (holder, beat)
        return True

    async def _beat(self, name: str, holder: str) -> None:
        assert self._interval is not None
        while True:
            await asyncio.sleep(self._interval)
            try:
                if not await self._store.heartbeat(name, holder):
                    log.warning("the slot of %s expired under its turn", name)
                    return
            except (RedisError, OSError) as exc:
                log.warning("could not extend the slot of %s: %s", name, exc)

    async def release(self, name: str) -> None:
        held = self._held.pop(name, None)
        if held is None:
            return
        holder, beat = held
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        try:
            waiting = await self._store.free(name, holder)
        except (RedisError, OSError) as exc:
            # Redis gone: the slot's TTL frees it anyway.
            log.warning("could not free the slot of %s: %s", name, exc)
            return
        await self._handoff(name, waiting)
