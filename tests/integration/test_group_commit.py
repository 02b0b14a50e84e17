"""`GroupCommit` on a real SQLite file: concurrent writers share a transaction, each
returns only once its rows are committed, an error reaches every writer of its
batch and leaves nothing behind, and a cancelled writer does not cancel the commit.
Then the same through `BoundedSqliteSaver`: concurrent graph runs with per-step
checkpoints take fewer commits than writes, and lose nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from langgraph.graph import END, START, StateGraph

from agent_server.persistence.group_commit import GroupCommit
from agent_server.persistence.sqlite_saver import BoundedSqliteSaver
from tests.integration.test_sqlite_saver import Counter

INSERT = "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"


class CountingCommits:
    """Counts the connection's commits (the thing group commit saves)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.count = 0
        commit = conn.commit

        async def counted() -> None:
            self.count += 1
            await commit()

        conn.commit = counted  # type: ignore[method-assign]


@pytest.fixture
async def conn(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    async with aiosqlite.connect(str(tmp_path / "kv.db")) as connection:
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
        await connection.commit()
        yield connection


def committed(path: Path) -> dict[str, str]:
    """What another connection sees: only committed rows."""
    with sqlite3.connect(path) as other:
        return dict(other.execute("SELECT k, v FROM kv"))


async def test_concurrent_writers_share_commits_and_each_returns_committed(
    conn: aiosqlite.Connection, tmp_path: Path
) -> None:
    commits = CountingCommits(conn)
    group = GroupCommit(conn, asyncio.Lock())

    async def writer(i: int) -> None:
        await group.submit([(INSERT, [(f"k{i}", str(i))])])
        # Durable on return: a separate connection already sees the row.
        assert committed(tmp_path / "kv.db")[f"k{i}"] == str(i)

    await asyncio.gather(*(writer(i) for i in range(50)))
    assert len(committed(tmp_path / "kv.db")) == 50
    # The first writer commits alone; the others wait for it and go together.
    assert 1 <= commits.count <= 3


async def test_statements_keep_their_order_inside_a_batch(
    conn: aiosqlite.Connection, tmp_path: Path
) -> None:
    group = GroupCommit(conn, asyncio.Lock())
    await asyncio.gather(
        group.submit([(INSERT, [("a", "first")])]),
        group.submit([(INSERT, [("a", "second")]), ("DELETE FROM kv WHERE k = ?", [("b",)])]),
        group.submit([(INSERT, [("a", "third"), ("b", "kept")])]),
    )
    assert committed(tmp_path / "kv.db") == {"a": "third", "b": "kept"}


async def test_an_error_reaches_every_writer_of_its_batch_and_rolls_it_back(
    conn: aiosqlite.Connection, tmp_path: Path
) -> None:
    group = GroupCommit(conn, asyncio.Lock())
    first = asyncio.create_task(group.submit([(INSERT, [("alone", "1")])]))
    await asyncio.sleep(0)  # the first batch is under way: the next two share one
    good = asyncio.create_task(group.submit([(INSERT, [("good", "2")])]))
    bad = asyncio.create_task(group.submit([("INSERT INTO missing VALUES (?)", [("x",)])]))
    await first
    for task in (good, bad):
        with pytest.raises(sqlite3.OperationalError, match="missing"):
            await task
    assert committed(tmp_path / "kv.db") == {"alone": "1"}
    # The connection is usable afterwards.
    await group.submit([(INSERT, [("after", "3")])])
    assert committed(tmp_path / "kv.db") == {"alone": "1", "after": "3"}


async def test_a_cancelled_writer_does_not_cancel_the_commit(
    conn: aiosqlite.Connection, tmp_path: Path
) -> None:
    group = GroupCommit(conn, asyncio.Lock())
    first = asyncio.create_task(group.submit([(INSERT, [("first", "1")])]))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(group.submit([(INSERT, [("cancelled", "2")])]))
    other = asyncio.create_task(group.submit([(INSERT, [("other", "3")])]))
    await asyncio.sleep(0)
    cancelled.cancel()
    await first
    await other  # shares the cancelled writer's batch: it must still commit
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await group.drain()
    assert committed(tmp_path / "kv.db") == {"first": "1", "cancelled": "2", "other": "3"}


def three_step_graph(saver: BoundedSqliteSaver) -> Any:
    graph = StateGraph(Counter)
    graph.add_node("one", lambda state: {"n": state["n"] + 1})
    graph.add_node("two", lambda state: {"n": state["n"] + 1})
    graph.add_node("three", lambda state: {"seen": [state["n"]]})
    graph.add_edge(START, "one")
    graph.add_edge("one", "two")
    graph.add_edge("two", "three")
    graph.add_edge("three", END)
    return graph.compile(checkpointer=saver)


async def test_concurrent_runs_with_per_step_checkpoints_share_commits(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.db"
    async with BoundedSqliteSaver.open(path, keep=None) as saver:
        commits = CountingCommits(saver.conn)
        graph = three_step_graph(saver)
        runs = 20
        configs = [{"configurable": {"thread_id": f"t{i}"}} for i in range(runs)]
        await asyncio.gather(
            *(
                graph.ainvoke({"n": i, "seen": []}, c, durability="async")
                for i, c in enumerate(configs)
            )
        )
        for i, config in enumerate(configs):
            state = await graph.aget_state(config)
            assert state.values == {"n": i + 2, "seen": [i + 2]}
            history = [s async for s in graph.aget_state_history(config)]
            assert len(history) == 5  # input, start, one, two, three: every step kept
    with sqlite3.connect(path) as other:
        checkpoints = other.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
        writes = other.execute("SELECT count(*) FROM writes").fetchone()[0]
    assert checkpoints == 5 * runs
    # One transaction per write would be checkpoints + one per task's writes.
    assert commits.count < checkpoints / 2, (commits.count, checkpoints, writes)
