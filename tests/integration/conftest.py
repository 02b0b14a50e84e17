"""Fixtures several integration modules share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_server import redis_server, require_redis_binaries


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    """A `redis-server` of the module's own (no persistence), so a test may flush its
    scripts or stop it without touching the machine's shared Redis."""
    require_redis_binaries()
    with redis_server() as port:
        yield port


@pytest.fixture
def long_deferral(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deferral no slow machine outlasts: a test that counts one commit (or one
    pipeline) per deferred block must not see the 50 ms timer fire in the middle of
    it (it did once under CI, on a machine running slower than usual)."""
    from agent_server.persistence import group_commit

    monkeypatch.setattr(group_commit, "DEFER_SECONDS", 30.0)  # both savers read it
