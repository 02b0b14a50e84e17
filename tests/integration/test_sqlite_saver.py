"""The embedded checkpoint file stays bounded: `BoundedSqliteSaver` keeps the newest
`CHECKPOINTS_PER_THREAD` checkpoints of each thread, on a real SQLite file."""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import httpx
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.graph import END, START, StateGraph

from agent_server.api.app import create_app
from agent_server.persistence.sqlite_saver import BoundedSqliteSaver
from tests.conftest import make_settings
from tests.support.servers import serve_in_thread


class Counter(TypedDict):
    n: int
    seen: Annotated[list[int], operator.add]


def counter_graph(saver: BoundedSqliteSaver) -> Any:
    """Two steps per run, so each run writes several checkpoints (input, step, step)."""
    graph = StateGraph(Counter)
    graph.add_node("bump", lambda state: {"n": state["n"] + 1})
    graph.add_node("note", lambda state: {"seen": [state["n"]]})
    graph.add_edge(START, "bump")
    graph.add_edge("bump", "note")
    graph.add_edge("note", END)
    return graph.compile(checkpointer=saver)


def rows(path: Path, table: str, thread_id: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [
            r[0]
            for r in conn.execute(
                f"SELECT checkpoint_id FROM {table} WHERE thread_id = ? ORDER BY checkpoint_id",
                (thread_id,),
            )
        ]


async def test_each_thread_keeps_its_newest_checkpoints_and_its_state(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.db"
    async with BoundedSqliteSaver.open(path, keep=8) as saver:
        assert saver.every == 2
        graph = counter_graph(saver)
        busy = {"configurable": {"thread_id": "busy"}}
        quiet = {"configurable": {"thread_id": "quiet"}}
        await graph.ainvoke({"n": 0, "seen": []}, busy, durability="async")
        for _ in range(39):  # `n` carries over in the thread's state
            await graph.ainvoke({"seen": []}, busy, durability="async")
        await graph.ainvoke({"n": 100, "seen": []}, quiet, durability="async")
        history = [snapshot async for snapshot in graph.aget_state_history(busy)]
        latest = await graph.aget_state(busy)

    kept = rows(path, "checkpoints", "busy")
    assert 8 <= len(kept) <= 8 + saver.every - 1, len(kept)
    assert len(history) == len(kept)  # the pruned ones are gone, not half-readable
    # The state is whole: 40 runs counted, every run's note kept (each checkpoint row
    # holds every channel's value, so pruning old rows loses none).
    assert latest.values["n"] == 40
    assert latest.values["seen"] == list(range(1, 41))
    # Pending writes of pruned checkpoints went with them.
    assert set(rows(path, "writes", "busy")) <= set(kept)
    # Another thread with few checkpoints is untouched.
    assert len(rows(path, "checkpoints", "quiet")) == 4


async def test_pruning_deletes_only_older_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.db"
    async with BoundedSqliteSaver.open(path, keep=None) as saver:
        graph = counter_graph(saver)
        config = {"configurable": {"thread_id": "t"}}
        for _ in range(5):
            await graph.ainvoke({"n": 0, "seen": []}, config, durability="async")
        everything = rows(path, "checkpoints", "t")
        assert len(everything) == 20  # keep=None: nothing is ever deleted
        assert await saver.prune_thread("t") == 0

        saver.keep = 3
        assert await saver.prune_thread("t") == 17
        assert rows(path, "checkpoints", "t") == everything[-3:]
        assert await saver.prune_thread("t") == 0  # idempotent
        assert await saver.prune_thread("no-such-thread") == 0


async def test_conformance_with_a_bound_it_never_reaches(tmp_path: Path) -> None:
    """Everything LangGraph expects of a saver still holds (the suite writes a few
    checkpoints per thread, far below this bound)."""
    paths = iter(tmp_path / f"{i}.db" for i in range(10_000))

    @checkpointer_test(name="BoundedSqliteSaver")
    async def bounded() -> AsyncIterator[BoundedSqliteSaver]:
        async with BoundedSqliteSaver.open(next(paths), keep=1000) as saver:
            yield saver

    report = await validate(bounded)
    report.print_report()
    failures = {name: r.failures for name, r in report.results.items() if r.failures}
    assert failures == {}
    detected = {name for name, r in report.results.items() if r.detected}
    assert detected >= {"put", "put_writes", "get_tuple", "list", "delete_thread"}


async def test_the_embedded_server_bounds_a_long_session(tmp_path: Path) -> None:
    """`CHECKPOINTS_PER_THREAD` now applies without Redis: 12 turns of one session
    leave at most that many rows in the checkpoint file, and the session carries on."""
    settings = make_settings(tmp_path, checkpoints_per_thread=3)
    with serve_in_thread(create_app(settings)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            first = await client.post("/api/chat/message", json={"message": "Calculate 1 + 1"})
            assert first.status_code == 200, first.text
            session_id = first.json()["session_id"]
            for i in range(2, 13):
                r = await client.post(
                    "/api/chat/message",
                    json={"message": f"Calculate {i} + {i}", "session_id": session_id},
                )
                assert r.status_code == 200, r.text
                assert str(2 * i) in r.json()["response"]
            history = await client.get(f"/api/chat/history/{session_id}")
            assert len(history.json()["turns"]) == 12
    kept = rows(settings.checkpoint_db_path, "checkpoints", session_id)
    assert 1 <= len(kept) <= 3, len(kept)
