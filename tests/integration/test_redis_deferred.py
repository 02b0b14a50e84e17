"""Deferred checkpoint writes on `AsyncRedisSaver` (a run with `durability="async"`),
on a Redis of the test's own: a run's steps go to Redis in one pipeline when its
block ends, this saver reads its own queued writes at once, another replica sees
them no later than `DEFER_SECONDS` after, a write Redis refuses raises at the
block's end, and a server that lost the scripts gets them again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from agent_server.persistence import group_commit
from agent_server.persistence.deferred_writes import deferred_writes
from agent_server.persistence.redis_saver import AsyncRedisSaver
from tests.integration.test_group_commit import three_step_graph
from tests.support.redis import unique_prefix
from tests.support.redis_server import (
    Traffic,
    counting_client,
)


@pytest.fixture
async def traffic_and_saver(redis_port: int) -> AsyncIterator[tuple[Traffic, AsyncRedisSaver]]:
    traffic = Traffic()
    client = counting_client(redis_port, traffic)
    saver = AsyncRedisSaver(client, key_prefix=unique_prefix("deferred"), ttl_seconds=600)
    await saver.setup()
    yield traffic, saver
    await client.aclose()


@pytest.fixture
async def replica(
    redis_port: int, traffic_and_saver: tuple[Traffic, AsyncRedisSaver]
) -> AsyncIterator[AsyncRedisSaver]:
    """The same keys through another client and saver: what another replica reads."""
    client = Redis(port=redis_port)
    yield AsyncRedisSaver(client, key_prefix=traffic_and_saver[1].key_prefix)
    await client.aclose()


def config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


async def checkpoints(saver: AsyncRedisSaver, thread_id: str) -> int:
    return len([item async for item in saver.alist(config(thread_id))])


async def test_a_runs_steps_go_in_one_pipeline_at_the_end_of_its_block(
    traffic_and_saver: tuple[Traffic, AsyncRedisSaver],
    replica: AsyncRedisSaver,
    long_deferral: None,
) -> None:
    traffic, saver = traffic_and_saver
    graph = three_step_graph(saver)
    traffic.reset()
    async with deferred_writes(saver, "t"):
        await graph.ainvoke({"n": 1, "seen": []}, config("t"), durability="async")
        assert traffic.round_trips == 1  # the graph's read of the thread's latest
        assert await checkpoints(replica, "t") == 0  # queued: not in Redis yet
    assert traffic.round_trips == 2  # ...and one pipeline with every step
    assert traffic.commands.count("EVALSHA") == 1 + 5 + 4  # read, 5 checkpoints, 4 writes
    assert await checkpoints(replica, "t") == 5
    assert (await three_step_graph(replica).aget_state(config("t"))).values == {
        "n": 3,
        "seen": [3],
    }
    # Outside a block: one round trip per write, as before.
    traffic.reset()
    await graph.ainvoke({"n": 1, "seen": []}, config("u"), durability="async")
    assert traffic.commands.count("EVALSHA") == 1 + 5 + 4
    assert traffic.round_trips >= 1 + 5 + 4  # each its own (plus new connections' handshakes)


async def test_this_saver_reads_its_queued_writes_at_once(
    traffic_and_saver: tuple[Traffic, AsyncRedisSaver],
) -> None:
    _, saver = traffic_and_saver
    graph = three_step_graph(saver)
    async with deferred_writes(saver, "t"):
        await graph.ainvoke({"n": 1, "seen": []}, config("t"), durability="async")
        assert (await graph.aget_state(config("t"))).values == {"n": 3, "seen": [3]}
        assert len([s async for s in graph.aget_state_history(config("t"))]) == 5


async def test_a_long_block_reaches_redis_within_the_deferral(
    traffic_and_saver: tuple[Traffic, AsyncRedisSaver], replica: AsyncRedisSaver
) -> None:
    _, saver = traffic_and_saver
    graph = three_step_graph(saver)
    async with deferred_writes(saver, "t"):
        await graph.ainvoke({"n": 1, "seen": []}, config("t"), durability="async")
        await asyncio.sleep(group_commit.DEFER_SECONDS * 4)
        assert await checkpoints(replica, "t") == 5


async def test_a_write_redis_refuses_raises_at_the_end_of_the_block(
    traffic_and_saver: tuple[Traffic, AsyncRedisSaver], redis_port: int
) -> None:
    _, saver = traffic_and_saver
    other = Redis(port=redis_port)
    try:
        # Every key of the thread as a plain string: the scripts' hash commands fail.
        for key in saver._keys("t"):
            await other.set(key, b"not a hash")
        with pytest.raises(Exception, match="WRONGTYPE"):
            async with deferred_writes(saver, "t"):
                await saver.aput_writes(
                    {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "x"}},
                    [("n", 1)],
                    "task",
                )
    finally:
        await other.aclose()


async def test_a_server_that_lost_the_scripts_gets_them_again(
    traffic_and_saver: tuple[Traffic, AsyncRedisSaver], replica: AsyncRedisSaver, redis_port: int
) -> None:
    _, saver = traffic_and_saver
    graph = three_step_graph(saver)
    other = Redis(port=redis_port)
    try:
        async with deferred_writes(saver, "t"):
            await graph.ainvoke({"n": 1, "seen": []}, config("t"), durability="async")
            await other.script_flush()  # this test's own server: nobody else's scripts
    finally:
        await other.aclose()
    assert await checkpoints(replica, "t") == 5
