"""`bounded`: a run's stream within its time limit and the server's shutdown grace.

Hand-written: `asyncio.timeout` around an async
generator's `yield` would cancel whoever consumes it (sse-starlette's send
loop), so the timeout covers only each `anext()` of the graph's stream, never
the `yield`. The stream's overall limit and the server's shutdown grace are
its deadlines; sse-starlette signals shutdown through an `anyio.Event`, which
one watcher task per stream waits on (no polling).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

import anyio

from agent_server.errors import AgentServerError, ShuttingDown, StreamTooLong

T = TypeVar("T")


class _Limits:
    """The deadlines of one bounded stream (loop time), and the step they bound.

    Why not a task per step waited on with a timeout (the first version): that is a
    task, a future and a loop hop per token, and shutdown had to be polled (every
    0.25 s per open stream: ~9 % server CPU with 500 idle streams).
    """

    def __init__(self, max_seconds: float, grace: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._max_seconds = max_seconds
        self._deadline = self._loop.time() + max_seconds
        self._grace = grace
        self._shutdown_at: float | None = None
        self._step: asyncio.Timeout | None = None

    def limit(self) -> float:
        if self._shutdown_at is None:
            return self._deadline
        return min(self._deadline, self._shutdown_at)

    def arm(self) -> asyncio.Timeout:
        """The timeout for the next step; raises at once if a deadline has passed."""
        if self.limit() <= self._loop.time():
            raise self.exceeded()
        self._step = asyncio.timeout_at(self.limit())
        return self._step

    def disarm(self) -> None:
        self._step = None

    def exceeded(self) -> AgentServerError:
        if self._shutdown_at is not None and self._shutdown_at <= self._deadline:
            return ShuttingDown()
        return StreamTooLong(self._max_seconds)

    async def watch(self, shutdown: anyio.Event) -> None:
        """Once `shutdown` is set, the grace period bounds the step in flight too."""
        await shutdown.wait()
        self._shutdown_at = self._loop.time() + self._grace
        if self._step is not None:
            self._step.reschedule(self.limit())


async def bounded(
    stream: AsyncIterator[T],
    *,
    max_seconds: float,
    shutdown: anyio.Event | None = None,
    shutdown_grace: float = 0.0,
) -> AsyncIterator[T]:
    """Yield from `stream` until it ends, `max_seconds` pass (StreamTooLong), or
    `shutdown_grace` seconds after `shutdown` is set (ShuttingDown). A step cut
    short is cancelled inside `stream`, as is the step in flight when whoever
    consumes this generator is cancelled (a client that went away)."""
    limits = _Limits(max_seconds, shutdown_grace)
    watcher = asyncio.create_task(limits.watch(shutdown)) if shutdown is not None else None
    try:
        while True:
            step = limits.arm()
            try:
                async with step:
                    item = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if step.expired():
                    raise limits.exceeded() from None
                raise
            finally:
                limits.disarm()
            yield item
    finally:
        if watcher is not None:
            watcher.cancel()
