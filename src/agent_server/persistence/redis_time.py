"""One budget of Redis time per HTTP request, not per Redis call.

Why: a hung Redis (SIGSTOP, a full network buffer) does not refuse connections, it
just never answers, so every call waits its whole socket timeout. A message touches
Redis several times (rate limit, token budget, session lock, checkpoint read and
write, lock release) and redis-py retried each timeout too, so a request took ~20 s
to fail where the caller expects a quick 503. Bounding each call cannot fix that;
bounding their sum can.

How: `RedisTimeMiddleware` opens a `RedisTime` budget for each HTTP request (a
context variable, so LangGraph's tasks and sse-starlette's stream task, which copy
the context, draw on the same budget). `BoundedConnection`, the connection class of
every Redis client we build, shrinks each socket read and write to what is left of
the budget and charges the time it waited; once it is spent, the next read fails at
once with redis-py's `TimeoutError`, which the API answers with 503
`store_unavailable`. Outside a request (start-up, lock heartbeats) the plain socket
timeout applies.

Written by hand because redis-py has no notion of a deadline spanning commands; the
class only narrows `socket_timeout` around redis-py's own read/write paths, so the
library's timeout handling (disconnect, error type) stays in charge.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.types import ASGIApp, Receive, Scope, Send


class RedisTime:
    """Seconds of Redis waiting one request may still spend."""

    __slots__ = ("_left", "limit")

    def __init__(self, seconds: float) -> None:
        self.limit = seconds
        self._left = seconds

    @property
    def left(self) -> float:
        return max(0.0, self._left)

    def charge(self, seconds: float) -> None:
        self._left -= seconds


_current: ContextVar[RedisTime | None] = ContextVar("agent_server_redis_time", default=None)
"""The running request's budget (a context variable, like asgi-correlation-id's request id)."""


def current_redis_time() -> RedisTime | None:
    return _current.get()


@contextmanager
def redis_time(seconds: float) -> Iterator[RedisTime]:
    """Bound the Redis waiting of everything run inside (and of tasks it starts)."""
    budget = RedisTime(seconds)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


@contextmanager
def redis_wait(own_timeout: float | None) -> Iterator[float | None]:
    """For code that talks to a connection's socket itself (the saver's `DirectLane`):
    the timeout to use, `own_timeout` narrowed to the request's budget, which is
    charged for the time spent inside. Raises redis-py's `TimeoutError` at once when
    the budget is spent."""
    budget = _current.get()
    if budget is None:
        yield own_timeout
        return
    if budget.left <= 0:
        raise RedisTimeoutError(
            f"this request spent its {budget.limit:g} s of Redis time; Redis is not answering"
        )
    started = time.monotonic()
    try:
        yield budget.left if own_timeout is None else min(own_timeout, budget.left)
    finally:
        budget.charge(time.monotonic() - started)


class BoundedConnection(Connection):
    """A redis-py asyncio connection whose reads and writes draw on the request's
    `RedisTime` (see the module docstring)."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        budget = _current.get()
        # An explicit `timeout` is a caller's own wait (pub/sub polling): leave it alone.
        if budget is None or kwargs.get("timeout") is not None or len(args) > 1:
            return await super().read_response(*args, **kwargs)
        try:
            with self._bounded(budget):
                return await super().read_response(*args, **kwargs)
        except RedisTimeoutError:
            # The command was sent: its reply may still come. A connection left with an
            # unread reply would hand it to the next command drawn from the pool.
            await self.disconnect(nowait=True)
            raise

    async def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        budget = _current.get()
        if budget is None:
            return await super().send_packed_command(*args, **kwargs)
        try:
            with self._bounded(budget):
                return await super().send_packed_command(*args, **kwargs)
        except RedisTimeoutError:
            await self.disconnect(nowait=True)  # possibly half a command on the wire
            raise

    @contextmanager
    def _bounded(self, budget: RedisTime) -> Iterator[None]:
        own = self.socket_timeout
        with redis_wait(own) as timeout:
            self.socket_timeout = timeout
            try:
                yield
            finally:
                self.socket_timeout = own


def redis_retry() -> Retry:
    """A pooled connection that died with a Redis restart is retried on a fresh one;
    a Redis that is really down fails every attempt at once. Timeouts are never
    retried: a Redis that did not answer in time will not answer the retry either
    (redis-py retries them by default, which made a hung Redis cost ~20 s a request)."""
    return Retry(
        ExponentialBackoff(cap=0.2, base=0.02), retries=2, supported_errors=(RedisConnectionError,)
    )


class RedisTimeMiddleware:
    """Opens a `RedisTime` of `seconds` around every HTTP request (pure ASGI: one
    context-variable set per request, no per-request task)."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with redis_time(self.seconds):
            await self.app(scope, receive, send)


def unbudgeted_context() -> contextvars.Context:
    """A copy of the current context without a request's Redis budget, for a task that
    outlives the request that starts it (a run executing in the background): its Redis
    calls are bounded by their own socket timeouts, not by what the request had left."""
    context = contextvars.copy_context()
    context.run(_current.set, None)
    return context
