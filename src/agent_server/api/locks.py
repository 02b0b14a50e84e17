"""One run at a time per session.

Two runs interleaving on one thread would each read the other's half-written
checkpoint. This in-process lock set is right for a single process; a
Redis-backed implementation with the same interface takes over when replicas
share state.
"""

from __future__ import annotations


class SessionLocks:
    """Non-blocking try-locks keyed by session id (a busy session → 409, not a queue)."""

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

    def held(self, session_id: str) -> bool:
        return session_id in self._held
