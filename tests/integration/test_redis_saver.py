"""AsyncRedisSaver against a real redis-server started for this module.

LangGraph's conformance suite (every capability), sliding TTL, round trips per
operation, bounded growth (DeltaChannel-aware), blob reference counting, a real
graph with a subgraph, and the error and sync-API contracts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict

import pytest
import redis
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import Checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agent_server.persistence.redis_keys import KEY_SUFFIXES, thread_keys
from agent_server.persistence.redis_saver import (
    AsyncRedisSaver,
    DirectLane,
    _Watchdog,
    pack_command,
)
from tests.support.redis import delete_prefix, unique_prefix
from tests.support.redis_server import (
    CountingConnection,
    Traffic,
    counting_client,
    free_port,
)
from tests.support.thread_writer import ThreadWriter

# --- fixtures and helpers --------------------------------------------------------------


@pytest.fixture
def redis_url(redis_port: int) -> str:
    return f"redis://127.0.0.1:{redis_port}/0"


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    prefix = unique_prefix("saver")
    yield prefix
    delete_prefix(redis_url, prefix)


@pytest.fixture
async def client(redis_port: int) -> AsyncIterator[Redis]:
    client = Redis(port=redis_port)
    yield client
    await client.aclose()


@pytest.fixture
def saver(client: Redis, prefix: str) -> AsyncRedisSaver:
    return AsyncRedisSaver(client, key_prefix=prefix)


async def keys_under(client: Redis, prefix: str) -> set[str]:
    return {key.decode() async for key in client.scan_iter(match=f"{prefix}:*", count=100)}


# --- conformance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "protocol"),
    [({}, 3), ({"ttl_seconds": 300, "refresh_on_read": True}, 3), ({}, 2)],
    ids=["plain", "ttl", "resp2"],
)
async def test_conformance_suite_passes_every_capability(
    redis_port: int, prefix: str, options: dict[str, Any], protocol: int
) -> None:
    @checkpointer_test(name="AsyncRedisSaver")
    async def factory() -> AsyncIterator[AsyncRedisSaver]:
        client = Redis(port=redis_port, protocol=protocol)
        yield AsyncRedisSaver(client, key_prefix=prefix, **options)
        await client.aclose()

    report = await validate(factory)
    report.print_report()
    failures = {name: result.failures for name, result in report.results.items() if result.failures}
    assert not failures
    assert {name for name, result in report.results.items() if result.detected} == {
        capability.value for capability in ALL_CAPABILITIES
    }
    assert report.conformance_level() == "FULL"


# --- sliding TTL ---------------------------------------------------------------------------


async def test_sliding_ttl_keeps_the_whole_thread_alive_then_expires_it_at_once(
    client: Redis, prefix: str
) -> None:
    saver = AsyncRedisSaver(client, key_prefix=prefix, ttl_seconds=2, refresh_on_read=False)
    root = ThreadWriter(saver, "ttl-thread")
    child = ThreadWriter(saver, "ttl-thread", ns="child:1")
    # b and c are written once, in the first checkpoint only; child:1 only at the start.
    await root.put({"a": 0, "b": "written once", "c": ["also", "once"]}, run_id="run-1")
    await child.put({"x": "child value"})

    started, i = time.monotonic(), 0
    while time.monotonic() - started < 3.2:  # keep writing for longer than the TTL
        await asyncio.sleep(0.4)
        i += 1
        stored = await root.put({"a": i}, run_id="run-1")
        await saver.aput_writes(stored, [("a", i)], task_id="task-1")
        tup = await saver.aget_tuple(root.latest)
        assert tup is not None
        assert tup.checkpoint["channel_values"] == {
            "a": i,
            "b": "written once",
            "c": ["also", "once"],
        }
        assert tup.pending_writes == [("task-1", "a", i)]
        child_tup = await saver.aget_tuple(child.latest)
        assert child_tup is not None
        assert child_tup.checkpoint["channel_values"] == {"x": "child value"}

    keys = await keys_under(client, prefix)
    assert {key.rsplit(":", 1)[1] for key in keys} == set(KEY_SUFFIXES)
    ttls = [await client.pttl(key) for key in keys]
    assert min(ttls) > 1500 and max(ttls) - min(ttls) < 100, ttls

    await asyncio.sleep(1.6)  # idle, short of the TTL: all there
    assert await keys_under(client, prefix) == keys
    await asyncio.sleep(0.7)  # past the TTL: all gone
    assert await keys_under(client, prefix) == set()
    assert await saver.aget_tuple(root.latest) is None


async def test_reads_refresh_the_ttl_only_when_asked(client: Redis, prefix: str) -> None:
    async def survives(refresh_on_read: bool) -> bool:
        saver = AsyncRedisSaver(
            client,
            key_prefix=f"{prefix}:{refresh_on_read}",
            ttl_seconds=1,
            refresh_on_read=refresh_on_read,
        )
        writer = ThreadWriter(saver, "reader")
        await writer.put({"a": 1})
        for _ in range(3):  # 1.8 s of reads only
            await asyncio.sleep(0.6)
            await saver.aget_tuple(writer.latest)
        return await saver.aget_tuple(writer.latest) is not None

    refreshed, not_refreshed = await asyncio.gather(survives(True), survives(False))
    assert refreshed is True
    assert not_refreshed is False


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["direct", "regular"])
async def test_each_operation_is_one_round_trip(redis_port: int, prefix: str, path: str) -> None:
    """Counted on the wire (every socket write) and on the server (EVALSHA calls), for
    the direct lane and for the regular `execute_command` path (a blocking pool)."""
    traffic = Traffic()
    if path == "direct":
        client = counting_client(redis_port, traffic)
    else:
        pool = BlockingConnectionPool(
            port=redis_port, connection_class=CountingConnection, recorder=traffic
        )
        client = Redis.from_pool(pool)
    stats = redis.Redis(port=redis_port)
    try:
        saver = AsyncRedisSaver(client, key_prefix=prefix)
        assert (saver._lane is not None) == (path == "direct")
        writer = ThreadWriter(saver, "rt")
        await client.ping()  # connection handshake out of the way
        await client.script_flush()

        traffic.reset()
        await writer.put({"messages": ["hi"], "turns": 0})
        assert traffic.commands == ["EVALSHA", "EVAL"]  # cold script cache: once
        traffic.reset()
        assert await saver.aget_tuple(writer.latest) is not None
        assert traffic.commands == ["EVALSHA", "EVAL"]

        async def counted(operation: Any) -> tuple[int, list[str], int]:
            before = stats.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
            traffic.reset()
            await operation
            after = stats.info("commandstats")["cmdstat_evalsha"]["calls"]
            return traffic.round_trips, list(traffic.commands), after - before

        await saver.setup()  # preloads every script
        stored = await writer.put({"messages": ["hi", "there"]})
        assert await counted(writer.put({"messages": ["hi", "there", "!"]})) == (
            1,
            ["EVALSHA"],
            1,
        )
        assert await counted(saver.aput_writes(stored, [("messages", "x")], "t1")) == (
            1,
            ["EVALSHA"],
            1,
        )
        assert await counted(saver.aget_tuple(writer.latest)) == (1, ["EVALSHA"], 1)
        assert await counted(saver.aget_tuple(stored)) == (1, ["EVALSHA"], 1)
        traffic.reset()
        await saver.adelete_thread("rt")
        assert (traffic.round_trips, traffic.commands) == (1, ["UNLINK"])
    finally:
        stats.close()
        await client.aclose()


# --- the direct lane --------------------------------------------------------------------------


def test_pack_command_matches_redis_py() -> None:
    command = ("EVALSHA", "ab" * 20, 2, "k:{t}:idx", "k:{t}:cp", 0, -5, b"\0raw\r\n", "é", b"")
    assert pack_command(command) == b"".join(Connection().pack_command(*command))


async def test_the_direct_lane_serves_only_plain_pooled_clients(redis_port: int) -> None:
    clients = {
        True: [
            Redis(port=redis_port),
            Redis(port=redis_port, protocol=2),
            Redis(port=redis_port, protocol=3),
            counting_client(redis_port, Traffic()),
        ],
        False: [
            Redis(port=redis_port, single_connection_client=True),
            Redis.from_pool(BlockingConnectionPool(port=redis_port)),
        ],
    }
    try:
        for expected, group in clients.items():
            for client in group:
                assert DirectLane.supports(client) is expected, client
    finally:
        for group in clients.values():
            for client in group:
                await client.aclose()


async def test_the_direct_lane_reuses_pooled_connections(redis_port: int, prefix: str) -> None:
    client = Redis(port=redis_port)
    try:
        saver = AsyncRedisSaver(client, key_prefix=prefix)
        writers = [ThreadWriter(saver, f"pool-{i}") for i in range(4)]
        for _ in range(3):  # concurrent operations take distinct connections
            await asyncio.gather(*(writer.put({"a": writer.step}) for writer in writers))
            await asyncio.gather(*(saver.aget_tuple(writer.latest) for writer in writers))
        pool = client.connection_pool
        assert len(pool._available_connections) == 4 and not pool._in_use_connections
    finally:
        await client.aclose()


async def test_the_direct_lane_times_out_and_recovers(redis_port: int, prefix: str) -> None:
    """`socket_timeout` bounds an exchange; the timed-out connection is dropped, so its
    late reply cannot be read as the answer to the next command."""
    client = Redis(port=redis_port, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    admin = Redis(port=redis_port)
    try:
        saver = AsyncRedisSaver(client, key_prefix=prefix)
        await saver.setup()
        writer = ThreadWriter(saver, "slow")
        await writer.put({"a": 1})
        await admin.execute_command("CLIENT", "PAUSE", 500, "ALL")
        with pytest.raises(redis.exceptions.TimeoutError):
            await saver.aget_tuple(writer.latest)
        await asyncio.sleep(0.5)
        await writer.put({"a": 2})
        tup = await saver.aget_tuple(writer.latest)
        assert tup is not None and tup.checkpoint["channel_values"] == {"a": 2}
    finally:
        await client.aclose()
        await admin.aclose()


async def test_a_cancelled_exchange_leaves_no_stale_reply(redis_port: int, prefix: str) -> None:
    client = Redis(port=redis_port)
    admin = Redis(port=redis_port)
    try:
        saver = AsyncRedisSaver(client, key_prefix=prefix)
        await saver.setup()
        first, second = ThreadWriter(saver, "first"), ThreadWriter(saver, "second")
        await first.put({"who": "first"})
        await second.put({"who": "second"})
        await admin.execute_command("CLIENT", "PAUSE", 300, "ALL")
        read = asyncio.create_task(saver.aget_tuple(first.latest))
        await asyncio.sleep(0.1)  # the request is on the wire, its reply not yet back
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        tup = await saver.aget_tuple(second.latest)  # same pooled connection, reconnected
        assert tup is not None and tup.checkpoint["channel_values"] == {"who": "second"}
    finally:
        await client.aclose()
        await admin.aclose()


async def test_the_direct_lane_retries_a_dropped_connection(redis_port: int, prefix: str) -> None:
    client = Redis(port=redis_port)  # redis-py's default retry policy
    admin = Redis(port=redis_port)
    try:
        saver = AsyncRedisSaver(client, key_prefix=prefix)
        writer = ThreadWriter(saver, "dropped")
        await writer.put({"a": 1})
        await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        tup = await saver.aget_tuple(writer.latest)
        assert tup is not None and tup.checkpoint["channel_values"] == {"a": 1}
    finally:
        await client.aclose()
        await admin.aclose()


async def test_the_direct_lane_sends_due_health_checks(redis_port: int, prefix: str) -> None:
    traffic = Traffic()
    client = counting_client(redis_port, traffic, health_check_interval=0.2)
    try:
        saver = AsyncRedisSaver(client, key_prefix=prefix)
        await saver.setup()
        writer = ThreadWriter(saver, "health")
        await writer.put({"a": 1})
        traffic.reset()
        await saver.aget_tuple(writer.latest)
        assert traffic.commands == ["EVALSHA"]  # just used: no check due
        await asyncio.sleep(0.3)
        traffic.reset()
        await saver.aget_tuple(writer.latest)
        assert traffic.commands == ["PING", "EVALSHA"]
    finally:
        await client.aclose()


# --- bounded growth -----------------------------------------------------------------------


async def test_max_checkpoints_per_thread_bounds_checkpoints_writes_and_blobs(
    client: Redis, prefix: str
) -> None:
    saver = AsyncRedisSaver(client, key_prefix=prefix, max_checkpoints_per_thread=3)
    writer = ThreadWriter(saver, "bounded")
    idx, _, blob, bref, writes, widx, _, runs = thread_keys(prefix, "bounded")
    stored = []
    for i in range(10):
        changed: dict[str, Any] = {"messages": [f"m{j}" for j in range(i + 1)]}
        if i == 0:
            changed["system"] = "static prompt"
        stored.append(await writer.put(changed, run_id=f"run-{i}"))
        await saver.aput_writes(stored[-1], [("messages", f"w{i}")], "task")

    listed = [
        tup.config["configurable"]["checkpoint_id"] async for tup in saver.alist(writer.latest)
    ]
    assert listed == [cfg["configurable"]["checkpoint_id"] for cfg in reversed(stored[-3:])]
    latest = await saver.aget_tuple(writer.latest)
    assert latest is not None
    assert latest.checkpoint["channel_values"] == {
        "messages": [f"m{j}" for j in range(10)],
        "system": "static prompt",
    }
    assert latest.pending_writes == [("task", "messages", "w9")]
    assert await client.zcard(idx) == 3
    # the 3 kept versions of `messages` plus the one `system` value written at step 0
    assert await client.hlen(blob) == 4
    assert await client.hlen(bref) == 4
    assert await client.hlen(writes) == 3 and await client.zcard(widx) == 3
    assert await client.zcard(runs) == 3
    assert await saver.aget_tuple(stored[0]) is None


def concat(state: list[str], writes: list[list[str]]) -> list[str]:
    return [*state, *(item for batch in writes for item in batch)]


class DeltaState(TypedDict):
    items: Annotated[list[str], DeltaChannel(concat, snapshot_frequency=4)]
    n: int


def delta_step(state: DeltaState) -> dict[str, Any]:
    return {"items": [f"node-{state.get('n', 0)}"], "n": state.get("n", 0) + 1}


async def test_trimming_keeps_deltachannel_history_intact(client: Redis, prefix: str) -> None:
    """A graph with a DeltaChannel rebuilds its state from ancestor writes; trimming
    must not cut the parent chain above the last snapshot."""

    async def run(checkpointer: Any) -> dict[str, Any]:
        builder = StateGraph(DeltaState)
        builder.add_node("step", delta_step)
        builder.add_edge(START, "step")
        builder.add_edge("step", END)
        graph = builder.compile(checkpointer=checkpointer)
        config: RunnableConfig = {"configurable": {"thread_id": "delta"}}
        for i in range(10):
            result = await graph.ainvoke({"items": [f"input-{i}"]}, config)
        return result

    expected = await run(InMemorySaver())
    saver = AsyncRedisSaver(client, key_prefix=prefix, max_checkpoints_per_thread=2)
    assert await run(saver) == expected
    assert len(expected["items"]) == 20
    kept = await client.zcard(thread_keys(prefix, "delta")[0])
    assert 2 < kept < 21  # trimmed, but not above the last snapshot


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    turns: int


def draft_reply(state: ChatState) -> dict[str, Any]:
    return {"messages": [AIMessage(f"draft {len(state['messages'])}")]}


def confirm(state: ChatState) -> dict[str, Any]:
    if len(state["messages"]) % 3 == 0:
        return {"messages": [AIMessage(f"confirmed: {interrupt('ok?')}")]}
    return {}


def build_subgraph_chat(checkpointer: Any) -> Any:
    """A default subgraph (a new `assistant:<task_id>` namespace per run) that
    sometimes interrupts for confirmation."""
    sub = StateGraph(ChatState)
    sub.add_node("draft", draft_reply)
    sub.add_node("confirm", confirm)
    sub.add_edge(START, "draft")
    sub.add_edge("draft", "confirm")
    sub.add_edge("confirm", END)
    builder = StateGraph(ChatState)
    builder.add_node("assistant", sub.compile())
    builder.add_edge(START, "assistant")
    builder.add_edge("assistant", END)
    return builder.compile(checkpointer=checkpointer)


async def test_trimming_drops_subgraph_namespaces_of_trimmed_steps(
    client: Redis, prefix: str
) -> None:
    async def run(checkpointer: Any) -> list[str]:
        graph = build_subgraph_chat(checkpointer)
        config: RunnableConfig = {"configurable": {"thread_id": "sub"}}
        for i in range(8):
            result = await graph.ainvoke({"messages": [HumanMessage(f"turn {i}")]}, config)
            if "__interrupt__" in result:  # resuming needs the subgraph's checkpoint
                result = await graph.ainvoke(Command(resume=f"yes {i}"), config)
        return [message.content for message in result["messages"]]

    expected = await run(InMemorySaver())
    assert any(content.startswith("confirmed: yes") for content in expected)
    saver = AsyncRedisSaver(client, key_prefix=prefix, max_checkpoints_per_thread=3)
    assert await run(saver) == expected
    namespaces = await client.smembers(thread_keys(prefix, "sub")[6])
    assert len(namespaces) <= 2, namespaces  # the root and the last run's subgraph


async def test_trimming_stops_at_the_newest_delta_boundary(client: Redis, prefix: str) -> None:
    saver = AsyncRedisSaver(client, key_prefix=prefix, max_checkpoints_per_thread=3)
    writer = ThreadWriter(saver, "boundary")
    pending = {"counters_since_delta_snapshot": {"items": [1, 1]}}
    ids = []
    for i in range(10):  # only checkpoint 2 is self-contained
        stored = await writer.put({"a": i}, **({} if i == 2 else pending))
        ids.append(stored["configurable"]["checkpoint_id"])
    listed = [tup.checkpoint["id"] async for tup in saver.alist(writer.latest)]
    assert listed == ids[2:][::-1]
    for i in range(10, 13):  # a new boundary at 10: the window shrinks back to 3
        stored = await writer.put({"a": i}, **({} if i == 10 else pending))
        ids.append(stored["configurable"]["checkpoint_id"])
    listed = [tup.checkpoint["id"] async for tup in saver.alist(writer.latest)]
    assert listed == ids[10:][::-1]


# --- blob reference counting ---------------------------------------------------------------


async def test_prune_delete_for_runs_and_copy_keep_blob_references_exact(
    client: Redis, saver: AsyncRedisSaver, prefix: str
) -> None:
    writer = ThreadWriter(saver, "refs")
    await writer.put({"a": 0, "shared": "kept by everyone"}, run_id="run-a")
    await writer.put({"a": 1}, run_id="run-b")
    await writer.put({"a": 2}, run_id="run-b")
    _, _, blob, bref, *_ = thread_keys(prefix, "refs")
    assert await client.hlen(blob) == 4 == await client.hlen(bref)

    await saver.adelete_for_runs(["run-a"])  # a@0 goes, `shared` is still referenced
    assert await client.hlen(blob) == 3 == await client.hlen(bref)
    latest = await saver.aget_tuple(writer.latest)
    assert latest is not None
    assert latest.checkpoint["channel_values"] == {"a": 2, "shared": "kept by everyone"}

    await saver.acopy_thread("refs", "refs-copy")
    await saver.adelete_thread("refs")
    copy_latest = await saver.aget_tuple({"configurable": {"thread_id": "refs-copy"}})
    assert copy_latest is not None
    assert copy_latest.checkpoint["channel_values"] == {"a": 2, "shared": "kept by everyone"}

    await saver.aprune(["refs-copy"], strategy="keep_latest")
    _, _, copy_blob, copy_bref, *_ = thread_keys(prefix, "refs-copy")
    assert await client.hlen(copy_blob) == 2 == await client.hlen(copy_bref)
    after_prune = await saver.aget_tuple({"configurable": {"thread_id": "refs-copy"}})
    assert after_prune is not None
    assert after_prune.checkpoint["channel_values"] == {"a": 2, "shared": "kept by everyone"}
    assert set(await keys_under(client, prefix)) == set(thread_keys(prefix, "refs-copy")) - {
        thread_keys(prefix, "refs-copy")[4],  # no writes
        thread_keys(prefix, "refs-copy")[5],
    }


async def test_putting_the_same_checkpoint_again_replaces_its_references(
    client: Redis, saver: AsyncRedisSaver, prefix: str
) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "again", "checkpoint_ns": ""}}
    checkpoint: Checkpoint = {
        "v": 4,
        "id": str(uuid6(clock_seq=0)),
        "ts": datetime.now(UTC).isoformat(),
        "channel_values": {"a": "first", "b": "kept"},
        "channel_versions": {"a": 1, "b": 1},
        "versions_seen": {},
        "updated_channels": None,
    }
    await saver.aput(config, checkpoint, {"run_id": "run-1"}, {"a": 1, "b": 1})
    again = {**checkpoint, "channel_values": {"a": "second"}, "channel_versions": {"a": 2, "b": 1}}
    await saver.aput(config, again, {"run_id": "run-2"}, {"a": 2})

    tup = await saver.aget_tuple(config)
    assert tup is not None
    assert tup.checkpoint["channel_values"] == {"a": "second", "b": "kept"}
    assert tup.metadata["run_id"] == "run-2"
    _, _, blob, bref, *_, runs = thread_keys(prefix, "again")
    assert sorted(await client.hkeys(blob)) == [b"\0a\x002", b"\0b\x001"]
    assert await client.hgetall(bref) == {b"\0a\x002": b"1", b"\0b\x001": b"1"}
    assert await client.zrange(runs, 0, -1) == [f"run-2\0\0{checkpoint['id']}".encode()]


# --- pending writes -----------------------------------------------------------------------


async def test_pending_writes_order_and_overwrite_rules(saver: AsyncRedisSaver) -> None:
    writer = ThreadWriter(saver, "writes")
    stored = await writer.put({"a": 1})
    await saver.aput_writes(stored, [("x", "b0"), ("y", "b1")], "task-b", task_path="~1:b")
    await saver.aput_writes(stored, [("x", "a0"), (ERROR, "first error")], "task-a", "~0:a")
    # a regular (task, idx) is never replaced; special writes are
    await saver.aput_writes(stored, [("x", "a0 again"), (ERROR, "last error")], "task-a", "~0:a")
    await saver.aput_writes(stored, [(INTERRUPT, {"ask": "human"})], "task-a", "~0:a")

    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert tup.pending_writes == [
        ("task-a", INTERRUPT, {"ask": "human"}),  # idx -3
        ("task-a", ERROR, "last error"),  # idx -1
        ("task-a", "x", "a0"),
        ("task-b", "x", "b0"),
        ("task-b", "y", "b1"),
    ]


# --- listing ---------------------------------------------------------------------------------


async def test_list_across_threads_scans_in_batches(client: Redis, prefix: str) -> None:
    saver = AsyncRedisSaver(client, key_prefix=prefix, scan_count=2)
    for t in range(3):
        writer = ThreadWriter(saver, f"list-{t}")
        await writer.put({"a": t}, source_thread=f"list-{t}")
        await writer.put({"a": t + 10}, source_thread=f"list-{t}")
    other = AsyncRedisSaver(client, key_prefix=f"{prefix}-other")
    await ThreadWriter(other, "elsewhere").put({"a": 0})

    everything = [tup async for tup in saver.alist(None)]
    assert len(everything) == 6
    assert {tup.config["configurable"]["thread_id"] for tup in everything} == {
        "list-0",
        "list-1",
        "list-2",
    }
    assert len([tup async for tup in saver.alist(None, limit=4)]) == 4
    filtered = [tup async for tup in saver.alist(None, filter={"source_thread": "list-1"})]
    assert [tup.checkpoint["channel_values"]["a"] for tup in filtered] == [11, 1]
    await other.adelete_thread("elsewhere")


async def test_list_without_namespace_merges_namespaces_newest_first(
    saver: AsyncRedisSaver,
) -> None:
    root, child = ThreadWriter(saver, "ns"), ThreadWriter(saver, "ns", ns="sub:1")
    ids = []
    for writer in (root, child, root, child):
        ids.append((await writer.put({"a": len(ids)}))["configurable"]["checkpoint_id"])
    listed = [tup async for tup in saver.alist({"configurable": {"thread_id": "ns"}})]
    assert [tup.checkpoint["id"] for tup in listed] == ids[::-1]
    assert [tup.config["configurable"]["checkpoint_ns"] for tup in listed] == [
        "sub:1",
        "",
        "sub:1",
        "",
    ]
    assert (
        len([tup async for tup in saver.alist({"configurable": {"thread_id": "ns"}}, limit=3)]) == 3
    )


# --- a real graph ----------------------------------------------------------------------------


def build_chat_graph(checkpointer: Any) -> Any:
    def draft(state: ChatState) -> dict[str, Any]:
        return {"messages": [AIMessage(f"draft {len(state['messages'])}")]}

    sub = StateGraph(ChatState)
    sub.add_node("draft", draft)
    sub.add_edge(START, "draft")
    sub.add_edge("draft", END)

    def count(state: ChatState) -> dict[str, Any]:
        return {"turns": state.get("turns", 0) + 1}

    builder = StateGraph(ChatState)
    builder.add_node("assistant", sub.compile(checkpointer=True))
    builder.add_node("count", count)
    builder.add_edge(START, "assistant")
    builder.add_edge("assistant", "count")
    builder.add_edge("count", END)
    return builder.compile(checkpointer=checkpointer)


async def test_graph_with_subgraph_round_trips_copies_and_deletes(
    client: Redis, saver: AsyncRedisSaver, prefix: str
) -> None:
    graph = build_chat_graph(saver)
    config: RunnableConfig = {"configurable": {"thread_id": "chat"}}
    for i in range(3):
        result = await graph.ainvoke({"messages": [HumanMessage(f"hello {i}")]}, config)
    assert result["turns"] == 3
    assert len(result["messages"]) == 6
    namespaces = await client.smembers(thread_keys(prefix, "chat")[6])
    assert b"" in namespaces and len(namespaces) > 1  # the subgraph checkpointed too

    await saver.acopy_thread("chat", "chat-copy")
    copy_config: RunnableConfig = {"configurable": {"thread_id": "chat-copy"}}
    assert (await graph.aget_state(copy_config)).values == result
    continued = await graph.ainvoke({"messages": [HumanMessage("again")]}, copy_config)
    assert continued["turns"] == 4 and len(continued["messages"]) == 8
    assert (await graph.aget_state(config)).values == result  # source untouched

    await saver.adelete_thread("chat")
    assert all("{chat}" not in key for key in await keys_under(client, prefix))
    assert (await graph.aget_state(config)).values == {}


# --- contracts --------------------------------------------------------------------------------


async def test_sync_methods_raise_and_name_the_async_method(saver: AsyncRedisSaver) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    calls = {
        "aget_tuple": lambda: saver.get_tuple(config),
        "alist": lambda: saver.list(config),
        "aput": lambda: saver.put(config, {}, {}, {}),  # type: ignore[typeddict-item]
        "aput_writes": lambda: saver.put_writes(config, [], "task"),
        "adelete_thread": lambda: saver.delete_thread("t"),
        "adelete_for_runs": lambda: saver.delete_for_runs(["r"]),
        "acopy_thread": lambda: saver.copy_thread("a", "b"),
        "aprune": lambda: saver.prune(["t"]),
    }
    for async_name, call in calls.items():
        with pytest.raises(NotImplementedError, match=f"async-only: use {async_name}$"):
            call()
    with pytest.raises(NotImplementedError, match="use aget_tuple"):
        build_chat_graph(saver).invoke({"messages": [HumanMessage("hi")]}, config)


async def test_connection_errors_propagate() -> None:
    client = Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    saver = AsyncRedisSaver(client, key_prefix="unreachable")
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await saver.aget_tuple({"configurable": {"thread_id": "t"}})
        with pytest.raises(redis.exceptions.ConnectionError):
            await ThreadWriter(saver, "t").put({"a": 1})
    finally:
        await client.aclose()


async def test_constructor_validates_its_inputs(redis_port: int) -> None:
    decoding = Redis(port=redis_port, decode_responses=True)
    plain = Redis(port=redis_port)
    try:
        with pytest.raises(ValueError, match="decode_responses=False"):
            AsyncRedisSaver(decoding)
        for bad in ({"key_prefix": "a{b}"}, {"ttl_seconds": 0}, {"max_checkpoints_per_thread": 0}):
            with pytest.raises(ValueError):
                AsyncRedisSaver(plain, **bad)
        with pytest.raises(ValueError, match="thread_id"):
            await AsyncRedisSaver(plain).aget_tuple({"configurable": {"thread_id": ""}})
        with pytest.raises(ValueError, match="NUL"):
            await AsyncRedisSaver(plain).aget_tuple(
                {"configurable": {"thread_id": "t", "checkpoint_ns": "a\0b"}}
            )
        with pytest.raises(ValueError, match="strategy"):
            await AsyncRedisSaver(plain).aprune(["t"], strategy="everything")
    finally:
        await decoding.aclose()
        await plain.aclose()


async def test_from_conn_string_owns_its_client(redis_url: str, prefix: str) -> None:
    async with AsyncRedisSaver.from_conn_string(
        redis_url, key_prefix=prefix, ttl_seconds=60, max_checkpoints_per_thread=5
    ) as saver:
        await saver.setup()
        writer = ThreadWriter(saver, "owned")
        await writer.put({"a": 1})
        tup = await saver.aget_tuple(writer.latest)
        assert tup is not None and tup.checkpoint["channel_values"] == {"a": 1}
        assert (saver.ttl_seconds, saver.max_checkpoints_per_thread) == (60, 5)
        client = saver.client
    pool = client.connection_pool
    assert not any(conn.is_connected for conn in pool._available_connections)  # closed


async def test_a_deadline_tells_its_own_cancellation_from_the_callers() -> None:
    loop = asyncio.get_running_loop()
    watchdog = _Watchdog()

    async def wait(seconds: float, cancel_after: float | None = None, work: float = 0.2) -> str:
        task = asyncio.current_task()
        assert task is not None
        if cancel_after is not None:
            loop.call_later(cancel_after, task.cancel)
        deadline = watchdog.deadline(loop, seconds)
        try:
            try:
                await asyncio.sleep(work)
            finally:
                deadline.cancel()
        except asyncio.CancelledError:
            return "timed out" if deadline.timed_out() else "cancelled"
        return "done"

    assert await wait(0.5) == "done"
    assert await wait(0.02) == "timed out"
    assert await wait(0.5, cancel_after=0.02) == "cancelled"
    # both at once (the caller's timer was armed first): the caller's cancel wins
    assert await wait(0.02, cancel_after=0.02) == "cancelled"
    # concurrent exchanges: each times out on its own deadline, the others go on
    results = await asyncio.gather(
        wait(0.5, work=0.05), wait(0.03), wait(0.06), wait(0.5, work=0.1), wait(0.09)
    )
    assert results == ["done", "timed out", "timed out", "done", "timed out"]
    assert not watchdog._deadlines


def test_a_watchdog_starts_afresh_on_another_event_loop() -> None:
    watchdog = _Watchdog()

    async def one_timeout() -> bool:
        loop = asyncio.get_running_loop()
        deadline = watchdog.deadline(loop, 0.02)
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            return deadline.timed_out()
        return False

    async def abandoned() -> None:  # its loop ends with the deadline pending
        watchdog.deadline(asyncio.get_running_loop(), 60)

    asyncio.run(abandoned())
    assert asyncio.run(one_timeout()) is True
    assert asyncio.run(one_timeout()) is True


async def test_the_direct_lane_honours_a_requested_reconnect(redis_port: int, prefix: str) -> None:
    """A server notification (RESP3 maintenance push) can mark a connection for
    reconnection; like `pool.release`, the lane drops it when giving it back."""
    client = Redis(port=redis_port)
    try:
        saver = AsyncRedisSaver(client, key_prefix=prefix)
        await saver.setup()  # no NOSCRIPT retry: one exchange per operation
        writer = ThreadWriter(saver, "reconnect")
        await writer.put({"a": 1})
        (conn,) = client.connection_pool._available_connections
        conn.mark_for_reconnect()
        await saver.aget_tuple(writer.latest)
        assert not conn.is_connected and not conn.should_reconnect()
        tup = await saver.aget_tuple(writer.latest)  # reconnects on next use
        assert tup is not None and conn.is_connected
    finally:
        await client.aclose()
