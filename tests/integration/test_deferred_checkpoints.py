"""Deferred checkpoint writes (`deferred_writes.py`) on a real SQLite file: inside the
block a write does not wait for its commit, yet this process reads it back at once;
the block's end makes the writes durable together and raises their error; a long
block still reaches disk within `DEFER_SECONDS`. Then the run core: an Agent Protocol
run (durability `async`) has every step's checkpoint on disk when `runs.wait`
answers, committed in one transaction."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

from agent_server.api.app import create_app
from agent_server.persistence import group_commit
from agent_server.persistence.cached_saver import LatestCheckpointCache
from agent_server.persistence.deferred_writes import deferred_writes
from agent_server.persistence.sqlite_saver import BoundedSqliteSaver
from tests.conftest import make_settings
from tests.integration.test_group_commit import CountingCommits, three_step_graph
from tests.support.servers import serve_in_thread


def on_disk(path: Path, thread_id: str) -> int:
    """Checkpoints another connection sees: what is committed."""
    with sqlite3.connect(path) as other:
        query = "SELECT count(*) FROM checkpoints WHERE thread_id = ?"
        return int(other.execute(query, (thread_id,)).fetchone()[0])


@pytest.fixture
async def saver(tmp_path: Path) -> AsyncIterator[BoundedSqliteSaver]:
    async with BoundedSqliteSaver.open(tmp_path / "checkpoints.db", keep=None) as opened:
        yield opened


async def test_inside_the_block_writes_wait_for_nothing_and_read_back(
    saver: BoundedSqliteSaver, tmp_path: Path, long_deferral: None
) -> None:
    path = tmp_path / "checkpoints.db"
    graph = three_step_graph(saver)
    config: dict[str, Any] = {"configurable": {"thread_id": "t"}}
    commits = CountingCommits(saver.conn)
    async with deferred_writes(saver, "t"):
        await graph.ainvoke({"n": 1, "seen": []}, config, durability="async")
        assert on_disk(path, "t") == 0  # accepted, not yet committed
        # ...but this process reads its own writes: reads wait for them.
        assert (await graph.aget_state(config)).values == {"n": 3, "seen": [3]}
        assert len([s async for s in graph.aget_state_history(config)]) == 5
    assert on_disk(path, "t") == 5
    assert commits.count == 1  # the read above committed everything in one go
    # Outside a block the same run commits as it goes.
    other: dict[str, Any] = {"configurable": {"thread_id": "u"}}
    await graph.ainvoke({"n": 1, "seen": []}, other, durability="async")
    assert on_disk(path, "u") == 5
    assert commits.count > 2


async def test_the_end_of_the_block_commits_every_step_in_one_transaction(
    saver: BoundedSqliteSaver, tmp_path: Path, long_deferral: None
) -> None:
    cached = LatestCheckpointCache(saver)  # the embedded stack: the wrapper forwards
    graph = three_step_graph(cached)  # type: ignore[arg-type]
    commits = CountingCommits(saver.conn)
    async with deferred_writes(cached, "t"):
        await graph.ainvoke({"n": 1, "seen": []}, {"configurable": {"thread_id": "t"}})
    assert on_disk(tmp_path / "checkpoints.db", "t") == 5
    assert commits.count == 1


async def test_a_long_block_still_reaches_disk_within_the_deferral(
    saver: BoundedSqliteSaver, tmp_path: Path
) -> None:
    graph = three_step_graph(saver)
    async with deferred_writes(saver, "t"):
        await graph.ainvoke({"n": 1, "seen": []}, {"configurable": {"thread_id": "t"}})
        await asyncio.sleep(group_commit.DEFER_SECONDS * 4)
        assert on_disk(tmp_path / "checkpoints.db", "t") == 5


async def test_a_failed_deferred_write_raises_at_the_end_of_its_block(
    saver: BoundedSqliteSaver, tmp_path: Path
) -> None:
    graph = three_step_graph(saver)
    with sqlite3.connect(tmp_path / "checkpoints.db") as other:
        other.execute("DROP TABLE writes")  # the disk refuses the next task writes
    with pytest.raises(sqlite3.OperationalError, match="writes"):
        async with deferred_writes(saver, "t"):
            await graph.ainvoke({"n": 1, "seen": []}, {"configurable": {"thread_id": "t"}})


async def test_a_block_that_fails_still_commits_what_it_wrote(
    saver: BoundedSqliteSaver, tmp_path: Path
) -> None:
    graph = three_step_graph(saver)
    with pytest.raises(RuntimeError, match="the run failed"):
        async with deferred_writes(saver, "t"):
            await graph.ainvoke({"n": 1, "seen": []}, {"configurable": {"thread_id": "t"}})
            raise RuntimeError("the run failed")
    assert on_disk(tmp_path / "checkpoints.db", "t") == 5


async def test_an_agent_protocol_run_is_on_disk_when_runs_wait_answers(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_per_minute=100_000)
    with serve_in_thread(create_app(settings)) as url:
        async with get_client(url=url, api_key=None) as sdk:
            for durability in (None, "sync", "exit"):
                thread = await sdk.threads.create()
                extra = {"durability": durability} if durability else {}
                values = await sdk.runs.wait(
                    thread["thread_id"],
                    "agent",
                    input={"messages": [{"role": "user", "content": "Calculate 10 * 20"}]},
                    **extra,
                )
                assert values["last_turn"]["response"] == "10 * 20 = 200"
                stored = on_disk(settings.checkpoint_db_path, thread["thread_id"])
                history = await sdk.threads.get_history(thread["thread_id"], limit=50)
                if durability == "exit":
                    assert stored == len(history) == 1
                else:
                    # input, model, approve, tools, model, persist: every step, durable.
                    assert stored == len(history) >= 6, (durability, stored, len(history))
