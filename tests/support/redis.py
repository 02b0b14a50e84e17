"""Access to a real Redis for tests, namespaced so tests never touch others' keys."""

from __future__ import annotations

import os
import uuid

import pytest
import redis

SHARED_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis(url: str = SHARED_REDIS_URL) -> str:
    """The URL if Redis answers; otherwise skip locally, but fail under CI=true
    (a missing service must not turn into a green run that tested nothing)."""
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        message = f"Redis at {url} is not reachable: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return url


def unique_prefix(name: str = "test") -> str:
    return f"agent-test:{name}:{uuid.uuid4().hex[:12]}"


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)
