"""Two server processes sharing one Redis and one PostgreSQL, as behind a load balancer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, fail, fake_upstream, text
from tests.support.postgres import temporary_database
from tests.support.processes import ServerProcess, base_env, server_process
from tests.support.redis import delete_prefix, require_redis, unique_prefix

CHAT = "replica-key-chat-0123456789"
LIMITED = "replica-key-limited-0123456789"
RATE_LIMIT = 6


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


@pytest.fixture
async def replicas(tmp_path: Path, upstream: FakeUpstream):  # type: ignore[no-untyped-def]
    redis_url = require_redis()
    prefix = unique_prefix("replicas")
    upstream.reset()
    async with temporary_database() as database_url:
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": prefix,
            "AGENT_API_KEYS": f"{CHAT},{LIMITED}",
            "OPENROUTER_API_KEY": "sk-replicas",
            "OPENROUTER_BASE_URL": upstream.base_url,
            "AGENT_MODELS": "m1,m2",
            "RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
            "MODEL_TIMEOUT_SECONDS": "10",
        }
        try:
            with ExitStack() as stack:
                servers = [
                    stack.enter_context(
                        server_process(base_env(tmp_path / name, **env), tmp_path / f"{name}.log")
                    )
                    for name in ("a", "b")
                ]
                yield servers
        finally:
            delete_prefix(redis_url, prefix)


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_session_continues_with_full_context_on_the_other_replica(
    replicas: list[ServerProcess], upstream: FakeUpstream
) -> None:
    a, b = replicas
    upstream.always("m1", text("Noted, your name is Ada."))
    async with httpx.AsyncClient(timeout=30, headers=headers(CHAT)) as client:
        first = await client.post(f"{a.url}/api/chat/message", json={"message": "I am Ada."})
        sid = first.json()["session_id"]
        second = await client.post(
            f"{b.url}/api/chat/message", json={"message": "Who am I?", "session_id": sid}
        )
        assert second.status_code == 200, second.text
        history_a = (await client.get(f"{a.url}/api/chat/history/{sid}")).json()["turns"]
    sent = [(m["role"], m["content"]) for m in upstream.requests[-1].body["messages"]][1:]
    assert sent == [
        ("user", "I am Ada."),
        ("assistant", "Noted, your name is Ada."),
        ("user", "Who am I?"),
    ]
    assert [t["user_message"] for t in history_a] == ["I am Ada.", "Who am I?"]


async def test_session_lock_holds_across_replicas(
    replicas: list[ServerProcess], upstream: FakeUpstream
) -> None:
    a, b = replicas
    upstream.always("m1", text("slow answer", first_token_latency=1.5))
    async with httpx.AsyncClient(timeout=30, headers=headers(CHAT)) as client:
        sid = (await client.post(f"{a.url}/api/chat/session")).json()["session_id"]
        body = {"message": "hello", "session_id": sid}
        slow = asyncio.create_task(client.post(f"{a.url}/api/chat/message", json=body))
        await asyncio.sleep(0.5)
        busy = await client.post(f"{b.url}/api/chat/message", json=body)
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "session_busy"
        assert (await slow).status_code == 200
        upstream.always("m1", text("quick"))
        again = await client.post(f"{b.url}/api/chat/message", json=body)
        assert again.status_code == 200


async def test_rate_limit_is_shared(replicas: list[ServerProcess], upstream: FakeUpstream) -> None:
    a, b = replicas
    upstream.always("m1", text("ok"))
    async with httpx.AsyncClient(timeout=30, headers=headers(LIMITED)) as client:
        statuses = [
            (
                await client.post(f"{server.url}/api/chat/message", json={"message": "hi"})
            ).status_code
            for server in [a, b] * (RATE_LIMIT // 2) + [b]
        ]
    assert statuses == [200] * RATE_LIMIT + [429]


async def test_cooldown_learned_by_one_replica_is_honoured_by_the_other(
    replicas: list[ServerProcess], upstream: FakeUpstream
) -> None:
    a, b = replicas
    upstream.script("m1", fail("rate_limit", retry_after="60"))
    upstream.always("m2", text("from m2"))
    async with httpx.AsyncClient(timeout=30, headers=headers(CHAT)) as client:
        first = await client.post(f"{a.url}/api/chat/message", json={"message": "hi"})
        assert [f["reason"] for f in first.json()["fallbacks"]] == ["rate_limit"]
        upstream.requests.clear()
        second = await client.post(f"{b.url}/api/chat/message", json={"message": "hi"})
    assert second.json()["model_used"] == "m2"
    assert second.json()["fallbacks"] == [{"model": "m1", "reason": "cooling_down"}]
    assert upstream.models_tried() == ["m2"]
