"""`deferred_writes(saver, thread_id)`: let a run's checkpoint writes skip waiting
for their commit, and make them durable together when the run ends.

Why: with `durability="async"` (the Agent Protocol's default) LangGraph writes a
checkpoint after every step and only needs them stored by the end of the run, yet
it waits for each save before starting the next (saves stay in order). A saver
that commits each one alone pays a transaction (SQLite) or a round trip (Redis)
per step; one that knows the run's bounds sends them together (`group_commit.py`,
`AsyncRedisSaver.deferred`). The run core, which owns those bounds, opens this
around the graph; a saver without `deferred` (LangGraph's own) gets a no-op.

The contract a deferring saver keeps: every read, delete and copy on it waits for
the writes accepted before it (so this process never reads stale), the block's
end waits for its writes and raises their error, and a deferred write is on disk
within `group_commit.DEFER_SECONDS` even if the run lasts longer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)


@runtime_checkable
class DeferringSaver(Protocol):
    def deferred(self, thread_id: str) -> contextlib.AbstractAsyncContextManager[None]: ...


def deferred_writes(saver: Any, thread_id: str) -> contextlib.AbstractAsyncContextManager[None]:
    """The saver's `deferred(thread_id)`, or nothing for a saver without one."""
    if isinstance(saver, DeferringSaver):
        return saver.deferred(thread_id)
    return contextlib.nullcontext()


@contextlib.asynccontextmanager
async def deferral(
    thread_id: str, begin: Callable[[], None], end: Callable[[], Awaitable[None]]
) -> AsyncIterator[None]:
    """What a deferring saver's `deferred` does around its own bookkeeping: `begin()`,
    the block, then `end()` (send what the block wrote; raise a write's failure). A
    block that fails still gets `end()` (Studio shows a failed run's steps), and its
    own error wins over a write's, which is logged."""
    begin()
    try:
        yield
    except BaseException:
        try:
            await end()
        except Exception:
            log.warning("checkpoints of failed work on %s not stored", thread_id)
        raise
    await end()
