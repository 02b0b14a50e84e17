"""Cooldowns shared through a real Redis: what one replica learns, the other honours."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from redis.asyncio import Redis

from agent_server.config import OFFLINE_MODEL_ID
from agent_server.llm import OfflineChatModel
from agent_server.llm.cooldowns import InMemoryCooldowns, RedisCooldowns
from agent_server.llm.fallback import ChainEntry, ChainPolicy, ModelChain
from agent_server.llm.registry import KNOWN_MODELS, ModelSpec
from tests.support.redis import delete_prefix, require_redis, unique_prefix
from tests.support.scripted_model import ScriptedChatModel

REQUEST = httpx.Request("POST", "http://upstream.test/v1/chat/completions")


def rate_limited(retry_after: str) -> openai.RateLimitError:
    response = httpx.Response(429, request=REQUEST, headers={"retry-after": retry_after})
    return openai.RateLimitError("slow down", response=response, body=None)


def server_error() -> openai.InternalServerError:
    return openai.InternalServerError(
        "boom", response=httpx.Response(500, request=REQUEST), body=None
    )


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    url = require_redis()
    prefix = unique_prefix("cooldowns")
    yield url, prefix
    delete_prefix(url, prefix)


def chain(script_a: list, script_b: list, cooldowns, **policy) -> tuple[ModelChain, list]:
    a = ScriptedChatModel(script=script_a)
    b = ScriptedChatModel(script=script_b, repeat_last=True)
    offline = ChainEntry(KNOWN_MODELS[OFFLINE_MODEL_ID], OfflineChatModel())
    entries = [ChainEntry(ModelSpec("a"), a), ChainEntry(ModelSpec("b"), b)]
    return ModelChain(entries, offline, cooldowns=cooldowns, policy=ChainPolicy(**policy)), [a, b]


async def test_cooldown_learned_by_one_replica_is_honoured_by_another(
    redis_prefix: tuple[str, str],
) -> None:
    url, prefix = redis_prefix
    redis_one, redis_two = Redis.from_url(url), Redis.from_url(url)
    try:
        replica_one, _ = chain(
            [rate_limited("30")], ["from b"], RedisCooldowns(redis_one, prefix=prefix)
        )
        replica_two, (a_two, _) = chain(
            ["a would answer"], ["from b"], RedisCooldowns(redis_two, prefix=prefix)
        )
        first = await replica_one.ainvoke([], tools=[])
        assert first.fallbacks == [{"model": "a", "reason": "rate_limit"}]

        second = await replica_two.ainvoke([], tools=[])
        assert second.fallbacks == [{"model": "a", "reason": "cooling_down"}]
        assert a_two.calls == []  # never asked: the shared cooldown said no
        ttl = await redis_two.pttl(f"{prefix}:cooldown:a")
        assert 25_000 < ttl <= 30_000
    finally:
        await redis_one.aclose()
        await redis_two.aclose()


async def test_repeated_failures_open_the_breaker_across_replicas(
    redis_prefix: tuple[str, str],
) -> None:
    url, prefix = redis_prefix
    client = Redis.from_url(url)
    try:
        cooldowns = RedisCooldowns(client, prefix=prefix)
        replica, (a, _) = chain(
            [server_error(), server_error()], ["from b"], cooldowns, failure_threshold=2
        )
        await replica.ainvoke([], tools=[])
        await replica.ainvoke([], tools=[])
        assert len(a.calls) == 2
        other, (a_other, _) = chain(["unused"], ["from b"], RedisCooldowns(client, prefix=prefix))
        result = await other.ainvoke([], tools=[])
        assert result.fallbacks == [{"model": "a", "reason": "cooling_down"}]
        assert a_other.calls == []
    finally:
        await client.aclose()


async def test_unreachable_redis_fails_open() -> None:
    """Cooldowns are advisory: a dead Redis must not fail the turn."""
    client = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    try:
        replica, _ = chain(["a answers"], ["b"], RedisCooldowns(client, prefix="x"))
        result = await replica.ainvoke([], tools=[])
        assert result.model_used == "a" and result.fallbacks == []
    finally:
        await client.aclose()


async def test_success_resets_the_failure_count() -> None:
    cooldowns = InMemoryCooldowns()
    replica, (a, _) = chain(
        [server_error(), "ok", server_error(), "ok"], ["b"], cooldowns, failure_threshold=2
    )
    for _ in range(4):
        await replica.ainvoke([], tools=[])
    assert await cooldowns.cooling(["a"]) == {}
    assert len(a.calls) == 4


async def test_turn_deadline_bounds_the_chain() -> None:
    import time

    replica, (a, b) = chain(["never called"], ["never called"], InMemoryCooldowns())
    with pytest.raises(Exception) as info:
        await replica.ainvoke([], tools=[], deadline=time.time() - 1)
    assert getattr(info.value, "code", None) == "upstream_unavailable"
    assert info.value.details == {"models": [{"model": "a", "reason": "deadline"}]}
    assert a.calls == [] and b.calls == []


async def commands_processed(client: Redis) -> int:
    """Commands the server has run, not counting this INFO call itself."""
    info = await client.info("stats")
    return int(info["total_commands_processed"])


async def test_healthy_models_cost_no_round_trip_per_call_within_the_cache_window() -> None:
    """Reading the keys before every call and deleting the failure count after every
    success was two round trips per model call; now the first call looks once."""
    from tests.support.redis_server import redis_server

    with redis_server() as port:
        client = Redis(port=port)
        try:
            replica, (a, _) = chain(
                ["one", "two", "three"], ["b"], RedisCooldowns(client, cache_seconds=30)
            )
            await replica.ainvoke([], tools=[])  # looks the keys up once
            before = await commands_processed(client)
            await replica.ainvoke([], tools=[])
            await replica.ainvoke([], tools=[])
            after = await commands_processed(client)
            assert len(a.calls) == 3
            assert after - before == 1  # only the INFO of `before`
        finally:
            await client.aclose()


async def test_a_failure_seen_is_reset_by_the_next_success_and_cooldowns_apply_at_once(
    redis_prefix: tuple[str, str],
) -> None:
    url, prefix = redis_prefix
    client = Redis.from_url(url)
    try:
        cooldowns = RedisCooldowns(client, prefix=prefix, cache_seconds=30)
        replica, (a, _) = chain([server_error(), "ok", rate_limited("30")], ["from b"], cooldowns)
        await replica.ainvoke([], tools=[])  # a fails once: counted in Redis
        assert await client.get(f"{prefix}:failures:a") == b"1"
        await replica.ainvoke([], tools=[])  # a succeeds: the count is reset
        assert await client.get(f"{prefix}:failures:a") is None
        await replica.ainvoke([], tools=[])  # a rate-limits: cooled down here at once
        result = await replica.ainvoke([], tools=[])
        assert result.fallbacks == [{"model": "a", "reason": "cooling_down"}]
        assert len(a.calls) == 3
    finally:
        await client.aclose()
