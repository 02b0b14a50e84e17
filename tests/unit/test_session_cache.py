"""The embedded-mode session cache: bounded, most recently used kept."""

from __future__ import annotations

from datetime import UTC, datetime

from agent_server.persistence.repository import SessionInfo
from agent_server.runs.session_cache import SessionCache


def session(sid: str, owner: str = "alice") -> SessionInfo:
    now = datetime.now(UTC)
    return SessionInfo(id=sid, owner=owner, title=None, created_at=now, last_active_at=now)


def test_remembers_and_forgets() -> None:
    cache = SessionCache()
    cache.put(session("a"))
    remembered = cache.get("a")
    assert remembered is not None and remembered.owner == "alice"
    cache.forget("a")
    assert cache.get("a") is None
    cache.forget("never-there")  # no error


def test_evicts_the_least_recently_used_beyond_capacity() -> None:
    cache = SessionCache(capacity=2)
    cache.put(session("a"))
    cache.put(session("b"))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put(session("c"))
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
