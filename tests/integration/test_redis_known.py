"""The saver's "known latest" read against a real redis-server: Redis answers
"unchanged" only when the checkpoint it holds is exactly the one the saver knows.

Two savers on one Redis stand for two replicas: whatever one of them changes
(a newer checkpoint, pending writes, the same checkpoint id put again, a deleted or
expired thread), the other must see on its next read.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, TypedDict

import pytest
import redis
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.base.id import uuid6
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from redis.asyncio import Redis

from agent_server.persistence.redis_known import KnownCheckpoint, KnownLatest
from agent_server.persistence.redis_saver import AsyncRedisSaver
from tests.support.redis import delete_prefix, unique_prefix
from tests.support.thread_writer import ThreadWriter


@pytest.fixture
def prefix(redis_port: int) -> Iterator[str]:
    prefix = unique_prefix("known")
    yield prefix
    delete_prefix(f"redis://127.0.0.1:{redis_port}/0", prefix)


@pytest.fixture
async def clients(redis_port: int) -> AsyncIterator[tuple[Redis, Redis]]:
    """One client per replica, as separate processes would have."""
    a, b = Redis(port=redis_port), Redis(port=redis_port)
    yield a, b
    await a.aclose()
    await b.aclose()


@pytest.fixture
def replicas(clients: tuple[Redis, Redis], prefix: str) -> tuple[AsyncRedisSaver, AsyncRedisSaver]:
    return AsyncRedisSaver(clients[0], key_prefix=prefix), AsyncRedisSaver(
        clients[1], key_prefix=prefix
    )


@pytest.fixture
def reference(clients: tuple[Redis, Redis], prefix: str) -> AsyncRedisSaver:
    """A saver that never answers from what it knows: the truth to compare with."""
    return AsyncRedisSaver(clients[0], key_prefix=prefix, known_latest_bytes=0)


def same(left: CheckpointTuple | None, right: CheckpointTuple | None) -> bool:
    assert left is not None and right is not None
    return (
        left.config == right.config
        and left.checkpoint == right.checkpoint
        and left.metadata == right.metadata
        and left.parent_config == right.parent_config
        and left.pending_writes == right.pending_writes
    )


async def test_reading_back_what_it_wrote_is_answered_unchanged_and_is_identical(
    replicas: tuple[AsyncRedisSaver, AsyncRedisSaver], reference: AsyncRedisSaver
) -> None:
    saver, _ = replicas
    writer = ThreadWriter(saver, "own")
    await writer.put({"messages": ["hi"], "turns": 0})
    await writer.put({"messages": ["hi", "there"]})  # "turns" comes from the previous one
    assert len(saver.known) == 1

    first = await saver.aget_tuple(writer.latest)
    second = await saver.aget_tuple(writer.latest)
    assert saver.known.unchanged_reads == 2
    assert first is not None
    assert first.checkpoint["channel_values"] == {"messages": ["hi", "there"], "turns": 0}
    assert same(first, await reference.aget_tuple(writer.latest))
    assert same(first, second)
    # every read deserializes afresh: a caller changing its copy changes no other
    first.checkpoint["channel_values"]["messages"].append("mutated")
    third = await saver.aget_tuple(writer.latest)
    assert third is not None and third.checkpoint["channel_values"]["messages"] == ["hi", "there"]


async def test_an_unchanged_answer_is_a_few_bytes_instead_of_the_state(
    redis_port: int, replicas: tuple[AsyncRedisSaver, AsyncRedisSaver]
) -> None:
    """Measured on the server (bytes it sent), with a 200 KB state."""
    saver, other = replicas
    writer = ThreadWriter(saver, "bytes")
    await writer.put({"messages": ["x" * 1000] * 200})
    stats = redis.Redis(port=redis_port)
    try:

        async def sent_by_server(read: Any) -> int:
            before = stats.info("stats")["total_net_output_bytes"]
            await read
            return stats.info("stats")["total_net_output_bytes"] - before

        full = await sent_by_server(other.aget_tuple(writer.latest))
        unchanged = await sent_by_server(saver.aget_tuple(writer.latest))
    finally:
        stats.close()
    assert saver.known.unchanged_reads == 1
    assert full > 200_000
    assert unchanged < 5_000  # includes the INFO reply itself


async def test_a_replica_sees_the_newer_checkpoint_another_one_wrote(
    replicas: tuple[AsyncRedisSaver, AsyncRedisSaver], reference: AsyncRedisSaver
) -> None:
    a, b = replicas
    writer = ThreadWriter(a, "newer")
    await writer.put({"messages": ["one"]})
    assert (await b.aget_tuple(writer.latest)) is not None  # b now knows "one"
    await writer.put({"messages": ["one", "two"]})

    seen = await b.aget_tuple(writer.latest)
    assert seen is not None and seen.checkpoint["channel_values"] == {"messages": ["one", "two"]}
    assert b.known.unchanged_reads == 0
    assert same(seen, await reference.aget_tuple(writer.latest))
    # and b learnt the new one from that full answer
    assert same(await b.aget_tuple(writer.latest), seen)
    assert b.known.unchanged_reads == 1


async def test_pending_writes_are_never_hidden_by_an_unchanged_answer(
    replicas: tuple[AsyncRedisSaver, AsyncRedisSaver],
) -> None:
    a, b = replicas
    writer = ThreadWriter(a, "writes")
    stored = await writer.put({"messages": ["q"]})
    assert (await b.aget_tuple(writer.latest)) is not None
    await a.aput_writes(stored, [("messages", "partial")], "task-1", "~0:agent")

    for saver in (a, b):  # the writer's own knowledge predates the writes too
        tup = await saver.aget_tuple(writer.latest)
        assert tup is not None
        assert tup.pending_writes == [("task-1", "messages", "partial")]
        assert saver.known.unchanged_reads == 0


async def test_putting_the_same_checkpoint_id_again_is_seen_by_the_other_replica(
    replicas: tuple[AsyncRedisSaver, AsyncRedisSaver], reference: AsyncRedisSaver
) -> None:
    """Same id, different record: only the digest tells them apart."""
    a, b = replicas
    writer = ThreadWriter(a, "again")
    config = await writer.put({"a": "first"}, run_id="run-1")
    assert (await b.aget_tuple(writer.latest)) is not None
    checkpoint_id = config["configurable"]["checkpoint_id"]
    first = await a.aget_tuple(writer.latest)
    assert first is not None
    again = {**first.checkpoint, "channel_values": {"a": "second"}, "channel_versions": {"a": "9"}}
    await a.aput(writer.latest, again, {"run_id": "run-2"}, {"a": "9"})

    seen = await b.aget_tuple(writer.latest)
    assert seen is not None
    assert seen.config["configurable"]["checkpoint_id"] == checkpoint_id
    assert seen.checkpoint["channel_values"] == {"a": "second"}
    assert seen.metadata["run_id"] == "run-2"
    assert b.known.unchanged_reads == 0
    assert same(seen, await reference.aget_tuple(writer.latest))


async def test_a_deleted_or_expired_thread_reads_as_none(
    clients: tuple[Redis, Redis], prefix: str
) -> None:
    a = AsyncRedisSaver(clients[0], key_prefix=prefix, ttl_seconds=1)
    b = AsyncRedisSaver(clients[1], key_prefix=prefix, ttl_seconds=1)
    deleted, expired = ThreadWriter(a, "deleted"), ThreadWriter(a, "expired")
    await deleted.put({"m": 1})
    await expired.put({"m": 1})
    assert await b.aget_tuple(deleted.latest) is not None
    assert await b.aget_tuple(expired.latest) is not None

    await a.adelete_thread("deleted")
    assert await a.aget_tuple(deleted.latest) is None
    assert await b.aget_tuple(deleted.latest) is None
    await asyncio.sleep(1.3)
    assert await a.aget_tuple(expired.latest) is None
    assert await b.aget_tuple(expired.latest) is None
    assert a.known.unchanged_reads == b.known.unchanged_reads == 0


async def test_a_fork_from_an_older_checkpoint_is_read_in_full_once(
    replicas: tuple[AsyncRedisSaver, AsyncRedisSaver], reference: AsyncRedisSaver
) -> None:
    """The fork refers to a value the saver never saw with the latest checkpoint:
    it cannot know the new latest from the put alone, so the next read fills it in."""
    saver, _ = replicas
    writer = ThreadWriter(saver, "fork")
    old = await writer.put({"a": "old", "b": "kept"})
    await writer.put({"a": "new"})
    older = await saver.aget_tuple(old)
    assert older is not None
    fork = {**older.checkpoint, "id": writer_next_id(writer), "channel_values": {"a": "old"}}
    await saver.aput(old, fork, {"source": "fork"}, {})
    assert saver.known.get("fork") is None

    tup = await saver.aget_tuple(writer.latest)
    assert tup is not None and tup.checkpoint["channel_values"] == {"a": "old", "b": "kept"}
    assert saver.known.unchanged_reads == 0
    assert same(tup, await reference.aget_tuple(writer.latest))
    again = await saver.aget_tuple(writer.latest)
    assert saver.known.unchanged_reads == 1
    assert same(again, tup)


def writer_next_id(writer: ThreadWriter) -> str:
    writer.step += 1
    return str(uuid6(clock_seq=writer.step))


async def test_subgraph_namespaces_are_not_kept(
    replicas: tuple[AsyncRedisSaver, AsyncRedisSaver],
) -> None:
    saver, _ = replicas
    child = ThreadWriter(saver, "nested", ns="child:1")
    await child.put({"x": 1})
    assert await saver.aget_tuple(child.latest) is not None
    assert len(saver.known) == 0
    assert saver.known.unchanged_reads == 0


async def test_zero_bytes_turns_it_off(reference: AsyncRedisSaver) -> None:
    writer = ThreadWriter(reference, "off")
    await writer.put({"m": 1})
    assert await reference.aget_tuple(writer.latest) is not None
    assert len(reference.known) == 0 and reference.known.unchanged_reads == 0


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


async def test_a_graph_turn_starts_from_what_the_previous_turn_wrote(
    replicas: tuple[AsyncRedisSaver, AsyncRedisSaver],
) -> None:
    saver, other = replicas

    def reply(state: State) -> dict[str, Any]:
        return {"messages": [AIMessage(f"seen {len(state['messages'])}")]}

    builder = StateGraph(State).add_node("reply", reply)
    builder.add_edge(START, "reply").add_edge("reply", END)
    graph = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "graph"}}
    await graph.ainvoke({"messages": [HumanMessage("one")]}, config)
    result = await graph.ainvoke({"messages": [HumanMessage("two")]}, config)
    assert [m.content for m in result["messages"]] == ["one", "seen 1", "two", "seen 3"]
    assert saver.known.unchanged_reads >= 1  # the second turn's opening read

    # another replica continues the conversation, then the first one again
    other_graph = builder.compile(checkpointer=other)
    await other_graph.ainvoke({"messages": [HumanMessage("three")]}, config)
    result = await graph.ainvoke({"messages": [HumanMessage("four")]}, config)
    assert [m.content for m in result["messages"]][-2:] == ["four", "seen 7"]


def entry(checkpoint_id: str, size: int) -> KnownCheckpoint:
    return KnownCheckpoint(checkpoint_id, b"r" * size, (b"v" * size, None))


def test_known_latest_is_bounded_by_bytes_least_recently_used_first_out() -> None:
    one = entry("1", 1000)
    known = KnownLatest(max_bytes=3 * one.size)
    for thread in ("a", "b", "c"):
        known.remember(thread, entry(thread, 1000))
    assert known.bytes == 3 * one.size and len(known) == 3
    assert known.get("a") is not None  # a is now the most recently used
    known.remember("d", entry("d", 1000))
    assert known.get("b") is None  # the least recently used went
    assert [known.get(t) is not None for t in ("a", "c", "d")] == [True, True, True]
    known.remember("a", entry("a2", 10))  # replacing frees the old entry's bytes
    assert known.bytes == 2 * one.size + entry("a2", 10).size
    known.remember("huge", entry("huge", 10_000))  # larger than the bound: not kept
    assert known.get("huge") is None and len(known) == 3
    known.forget("c")
    known.clear()
    assert len(known) == 0 and known.bytes == 0


def test_the_digest_is_the_records_sha1() -> None:
    assert entry("1", 3).digest == hashlib.sha1(b"rrr").hexdigest()
