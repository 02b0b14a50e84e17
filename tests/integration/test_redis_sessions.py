"""Sessions on the Redis checkpointer: sliding TTL, rebuild after expiry, deletion."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from agent_server.api.app import create_app
from agent_server.config import Settings
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, fake_upstream, text
from tests.support.past_lookups import PastLookups
from tests.support.redis import delete_prefix, require_redis, unique_prefix
from tests.support.servers import serve_in_thread


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    url = require_redis()
    prefix = unique_prefix("sessions")
    yield url, prefix
    delete_prefix(url, prefix)


def thread_keys(url: str, prefix: str, session_id: str) -> list[bytes]:
    return list(redis.Redis.from_url(url).scan_iter(match=f"{prefix}:{{{session_id}}}:*"))


def upstream_settings(
    tmp_path: Path, redis_prefix: tuple[str, str], fake: FakeUpstream, **overrides: Any
) -> Settings:
    """Settings on the test's Redis prefix whose one model, m1, the fake upstream serves."""
    url, prefix = redis_prefix
    return make_settings(
        tmp_path,
        redis_url=url,
        redis_key_prefix=prefix,
        openrouter_api_key="sk-test",
        openrouter_base_url=fake.base_url,
        agent_models=["m1"],
        **overrides,
    )


async def test_expired_session_is_rebuilt_from_sql(
    tmp_path: Path, redis_prefix: tuple[str, str]
) -> None:
    url, prefix = redis_prefix
    with fake_upstream() as fake:
        fake.always("m1", text("Hello Ada."))
        settings = upstream_settings(tmp_path, redis_prefix, fake, session_ttl_seconds=1)
        with serve_in_thread(create_app(settings)) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                first = await client.post("/api/chat/message", json={"message": "I am Ada."})
                sid = first.json()["session_id"]
                assert thread_keys(url, prefix, sid), "checkpoints live in Redis"
                for _ in range(40):  # the TTL passes with no activity
                    if not thread_keys(url, prefix, sid):
                        break
                    await asyncio.sleep(0.1)
                assert thread_keys(url, prefix, sid) == []
                second = await client.post(
                    "/api/chat/message", json={"message": "Who am I?", "session_id": sid}
                )
                assert second.status_code == 200
    sent = [(m["role"], m["content"]) for m in fake.requests[-1].body["messages"]][1:]
    assert sent == [("user", "I am Ada."), ("assistant", "Hello Ada."), ("user", "Who am I?")]


async def test_ttl_slides_with_activity_and_expires_at_follows(
    tmp_path: Path, redis_prefix: tuple[str, str]
) -> None:
    url, prefix = redis_prefix
    settings = make_settings(
        tmp_path, redis_url=url, redis_key_prefix=prefix, session_ttl_seconds=3
    )
    with serve_in_thread(create_app(settings)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            r = await client.post("/api/chat/message", json={"message": "hi"})
            sid = r.json()["session_id"]
            before = (await client.get(f"/api/chat/history/{sid}")).json()["expires_at"]
            for _ in range(3):  # keep talking for longer than the TTL
                await asyncio.sleep(1.2)
                body = {"message": "Calculate 1+1", "session_id": sid}
                assert (await client.post("/api/chat/message", json=body)).status_code == 200
            keys = thread_keys(url, prefix, sid)
            assert keys, "an active session never expires"
            ttls = [redis.Redis.from_url(url).pttl(key) for key in keys]
            assert all(0 < ttl <= 3000 for ttl in ttls)
            after = (await client.get(f"/api/chat/history/{sid}")).json()["expires_at"]
            assert after > before


async def test_delete_removes_redis_and_sql_state(
    tmp_path: Path, redis_prefix: tuple[str, str]
) -> None:
    url, prefix = redis_prefix
    settings = make_settings(tmp_path, redis_url=url, redis_key_prefix=prefix)
    with serve_in_thread(create_app(settings)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            sid = (await client.post("/api/chat/message", json={"message": "hi"})).json()[
                "session_id"
            ]
            assert thread_keys(url, prefix, sid)
            assert (await client.delete(f"/api/chat/session/{sid}")).status_code == 204
            assert thread_keys(url, prefix, sid) == []
            assert (await client.get(f"/api/chat/history/{sid}")).status_code == 404


async def test_checkpoints_per_thread_are_bounded(
    tmp_path: Path, redis_prefix: tuple[str, str]
) -> None:
    url, prefix = redis_prefix
    settings = make_settings(
        tmp_path, redis_url=url, redis_key_prefix=prefix, checkpoints_per_thread=4
    )
    with serve_in_thread(create_app(settings)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            sid = (await client.post("/api/chat/session")).json()["session_id"]
            for n in range(6):
                body = {"message": f"Calculate {n} + 1", "session_id": sid}
                r = await client.post("/api/chat/message", json=body)
                assert r.json()["response"] == f"{n} + 1 = {n + 1}"
    index = f"{prefix}:{{{sid}}}:idx"
    assert redis.Redis.from_url(url).zcard(index) == 4


async def test_a_session_made_by_post_skips_the_lookup_once_then_restores_when_lost(
    tmp_path: Path, redis_prefix: tuple[str, str]
) -> None:
    """Replicas: the session row is read from SQL on every message (no in-process
    copy), so its title says exactly whether it has a past to restore."""
    url, prefix = redis_prefix
    with fake_upstream() as fake:
        fake.always("m1", text("Hello Ada."))
        settings = upstream_settings(tmp_path, redis_prefix, fake)
        app = create_app(settings)
        with serve_in_thread(app) as base:
            lookups = PastLookups(app)
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                sid = (await client.post("/api/chat/session")).json()["session_id"]
                first = await client.post(
                    "/api/chat/message", json={"message": "I am Ada.", "session_id": sid}
                )
                assert first.status_code == 200
                assert lookups.calls == 0
                redis.Redis.from_url(url).delete(*thread_keys(url, prefix, sid))  # lost
                second = await client.post(
                    "/api/chat/message", json={"message": "Who am I?", "session_id": sid}
                )
                assert second.status_code == 200
                assert lookups.calls == 1
    sent = [(m["role"], m["content"]) for m in fake.requests[-1].body["messages"]][1:]
    assert sent == [("user", "I am Ada."), ("assistant", "Hello Ada."), ("user", "Who am I?")]
