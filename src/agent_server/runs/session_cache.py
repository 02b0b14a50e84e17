"""Which sessions exist and who owns them, remembered in-process (embedded mode).

Why: every message to an existing session must first prove the caller owns it.
On SQLite that lookup is a round trip through aiosqlite's worker thread, about
0.5 ms on the path to the first streamed token, for an answer that never changes:
a session's owner is fixed at creation and the row only goes away through
`Turns.delete_session`, in this process. That holds only while this process
is the only server, which is what running without `REDIS_URL` means (replicas
need Redis); with Redis the service does not use this cache, so a delete on
another replica can never be missed.
"""

from __future__ import annotations

from collections import OrderedDict

from agent_server.persistence.repository import SessionInfo

DEFAULT_CAPACITY = 10_000


class SessionCache:
    """A bounded LRU of `SessionInfo` by session id. Only `id` and `owner` are
    meant to be read from its entries: timestamps and title go stale."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._entries: OrderedDict[str, SessionInfo] = OrderedDict()
        self._capacity = capacity

    def get(self, session_id: str) -> SessionInfo | None:
        session = self._entries.get(session_id)
        if session is not None:
            self._entries.move_to_end(session_id)
        return session

    def put(self, session: SessionInfo) -> None:
        self._entries[session.id] = session
        self._entries.move_to_end(session.id)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def forget(self, session_id: str) -> None:
        self._entries.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._entries)
