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
