"""AsyncRedisSaver on a real 3-master Redis Cluster, through `redis.asyncio.RedisCluster`.

Each thread lives in one slot (its keys share the `{thread_id}` hash tag), so every
script runs on one node; threads spread over the nodes. A real LangGraph graph runs
turns on threads owned by different masters, then the cross-thread operations (SCAN
over every primary, copy between nodes, delete, prune, delete_for_runs) are checked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from redis.asyncio import RedisCluster

from agent_server.persistence.deferred_writes import deferred_writes
from agent_server.persistence.redis_keys import thread_keys
from agent_server.persistence.redis_saver import AsyncRedisSaver
from tests.support.redis import unique_prefix
from tests.support.redis_server import cluster_client, redis_cluster, require_redis_binaries


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    require_redis_binaries()
    with redis_cluster(masters=3) as ports:
        yield ports


@pytest.fixture
async def cluster(cluster_ports: list[int]) -> AsyncIterator[RedisCluster]:
    client = cluster_client(cluster_ports)
    await client.initialize()
    yield client
    await client.aclose()


@pytest.fixture
async def saver(cluster: RedisCluster) -> AsyncIterator[AsyncRedisSaver]:
    prefix = unique_prefix("cluster")
    yield AsyncRedisSaver(cluster, key_prefix=prefix, ttl_seconds=600)
    keys = [key async for key in cluster.scan_iter(match=f"{prefix}:*", count=200)]
    for key in keys:
        await cluster.unlink(key)


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    turns: int


def respond(state: State) -> dict[str, Any]:
    last = state["messages"][-1]
    return {"messages": [AIMessage(f"echo: {last.content}")]}


def count(state: State) -> dict[str, Any]:
    return {"turns": state.get("turns", 0) + 1}


def build_graph(checkpointer: AsyncRedisSaver) -> Any:
    builder = StateGraph(State)
    builder.add_node("respond", respond)
    builder.add_node("count", count)
    builder.add_edge(START, "respond")
    builder.add_edge("respond", "count")
    builder.add_edge("count", END)
    return builder.compile(checkpointer=checkpointer)


def threads_on_distinct_nodes(cluster: RedisCluster, prefix: str, n: int) -> list[str]:
    """Thread ids whose keys are owned by `n` different masters."""
    chosen: dict[str, str] = {}
    for i in range(1000):
        thread_id = f"thread-{i}"
        node = cluster.get_node_from_key(thread_keys(prefix, thread_id)[0]).name
        chosen.setdefault(node, thread_id)
        if len(chosen) == n:
            return list(chosen.values())
    raise AssertionError("could not spread threads over the cluster")


def config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


async def test_deferred_runs_on_threads_spread_over_the_cluster(
    cluster: RedisCluster, saver: AsyncRedisSaver
) -> None:
    """A run's queued writes go as one pipeline to the node that owns its thread."""
    threads = threads_on_distinct_nodes(cluster, saver.key_prefix, 3)
    graph = build_graph(saver)
    for thread_id in threads:
        async with deferred_writes(saver, thread_id):
            await graph.ainvoke(
                {"messages": [HumanMessage(f"{thread_id} says hi")]},
                config(thread_id),
                durability="async",
            )
    other = AsyncRedisSaver(cluster, key_prefix=saver.key_prefix)  # another replica
    for thread_id in threads:
        history = [t async for t in other.alist(config(thread_id))]
        assert [t.metadata["step"] for t in history] == [2, 1, 0, -1]
        assert history[0].checkpoint["channel_values"]["turns"] == 1


async def test_graph_turns_on_threads_spread_over_the_cluster(
    cluster: RedisCluster, saver: AsyncRedisSaver
) -> None:
    threads = threads_on_distinct_nodes(cluster, saver.key_prefix, 3)
    graph = build_graph(saver)
    for turn in range(3):
        for thread_id in threads:
            result = await graph.ainvoke(
                {"messages": [HumanMessage(f"{thread_id} says {turn}")]}, config(thread_id)
            )
            assert result["turns"] == turn + 1
            assert result["messages"][-1].content == f"echo: {thread_id} says {turn}"

    for thread_id in threads:
        keys = thread_keys(saver.key_prefix, thread_id)
        assert len({cluster.keyslot(key) for key in keys}) == 1
        present = [key for key in keys if await cluster.exists(key)]
        assert present == keys[:-1]  # every key but `runs`: these runs carry no run_id
        ttls = [await cluster.pttl(key) for key in present]
        assert all(0 < ttl <= 600_000 for ttl in ttls)

        tup = await saver.aget_tuple(config(thread_id))
        assert tup is not None
        assert len(tup.checkpoint["channel_values"]["messages"]) == 6
        assert tup.checkpoint["channel_values"]["turns"] == 3
        history = [t async for t in saver.alist(config(thread_id))]
        assert history[0].checkpoint["id"] == tup.checkpoint["id"]
        assert [t.metadata["step"] for t in history] == list(range(len(history) - 2, -2, -1))

    everything = [t async for t in saver.alist(None)]  # SCAN over every primary
    assert {t.config["configurable"]["thread_id"] for t in everything} == set(threads)
    assert len(everything) == sum(
        [len([t async for t in saver.alist(config(thread_id))]) for thread_id in threads]
    )


async def test_copy_delete_prune_and_delete_for_runs_across_nodes(
    cluster: RedisCluster, saver: AsyncRedisSaver
) -> None:
    source, target, other = threads_on_distinct_nodes(cluster, saver.key_prefix, 3)
    graph = build_graph(saver)
    for turn in range(2):
        await graph.ainvoke(
            {"messages": [HumanMessage(f"turn {turn}")]},
            {"configurable": {"thread_id": source, "run_id": f"run-{turn}"}},
        )
    await graph.ainvoke({"messages": [HumanMessage("other")]}, config(other))

    # copy to a thread on another master, then keep talking there
    await saver.acopy_thread(source, target)
    source_state = await graph.aget_state(config(source))
    assert (await graph.aget_state(config(target))).values == source_state.values
    continued = await graph.ainvoke({"messages": [HumanMessage("on the copy")]}, config(target))
    assert continued["turns"] == 3
    assert (await graph.aget_state(config(source))).values == source_state.values

    # delete_for_runs finds run-0's checkpoints on both the source and its copy
    before = len([t async for t in saver.alist(config(source))])
    await saver.adelete_for_runs(["run-0"])
    for thread_id in (source, target):
        runs = {t.metadata.get("run_id") async for t in saver.alist(config(thread_id))}
        assert "run-0" not in runs
    assert len([t async for t in saver.alist(config(source))]) < before
    assert (await graph.aget_state(config(source))).values == source_state.values

    await saver.aprune([target], strategy="keep_latest")
    assert len([t async for t in saver.alist(config(target))]) == 1
    assert (await graph.aget_state(config(target))).values == continued

    await saver.adelete_thread(source)
    assert await saver.aget_tuple(config(source)) is None
    assert not any([await cluster.exists(key) for key in thread_keys(saver.key_prefix, source)])
    assert await saver.aget_tuple(config(other)) is not None


async def test_from_conn_string_opens_a_cluster_client(cluster_ports: list[int]) -> None:
    prefix = unique_prefix("cluster-url")
    url = f"redis://127.0.0.1:{cluster_ports[0]}/0"
    async with AsyncRedisSaver.from_conn_string(url, cluster=True, key_prefix=prefix) as saver:
        assert isinstance(saver.client, RedisCluster)
        await saver.setup()  # loads the scripts on every primary
        graph = build_graph(saver)
        threads = threads_on_distinct_nodes(saver.client, prefix, 3)
        for thread_id in threads:
            await graph.ainvoke({"messages": [HumanMessage("hi")]}, config(thread_id))
            assert (await graph.aget_state(config(thread_id))).values["turns"] == 1
        for thread_id in threads:
            await saver.adelete_thread(thread_id)
        assert [key async for key in saver.client.scan_iter(match=f"{prefix}:*")] == []
