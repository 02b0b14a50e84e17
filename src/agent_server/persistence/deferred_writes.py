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
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class DeferringSaver(Protocol):
    def deferred(self, thread_id: str) -> contextlib.AbstractAsyncContextManager[None]: ...


def deferred_writes(saver: Any, thread_id: str) -> contextlib.AbstractAsyncContextManager[None]:
    """The saver's `deferred(thread_id)`, or nothing for a saver without one."""
    if isinstance(saver, DeferringSaver):
        return saver.deferred(thread_id)
    return contextlib.nullcontext()
