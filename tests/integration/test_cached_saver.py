"""The embedded saver's latest-checkpoint cache behaves exactly like the saver it wraps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agent_server.persistence.cached_saver import LatestCheckpointCache
from agent_server.persistence.sqlite_saver import BoundedSqliteSaver


def outcome(report: Any) -> dict[str, tuple[bool, int]]:
    return {
        name: (bool(result.detected), len(result.failures or []))
        for name, result in report.results.items()
    }


async def test_conformance_matches_the_plain_sqlite_saver(tmp_path: Path) -> None:
    """Same capabilities detected and the same (zero) failures with the cache in front,
    where the suite reads right after writes, lists, deletes and puts pending writes."""
    paths = iter(tmp_path / f"{i}.db" for i in range(10_000))

    # The embedded saver as the app builds it (keeping every checkpoint, as the suite
    # expects): it also implements copy_thread, delete_for_runs and prune.
    @checkpointer_test(name="BoundedSqliteSaver")
    async def plain() -> AsyncIterator[BoundedSqliteSaver]:
        async with BoundedSqliteSaver.open(next(paths), keep=None) as saver:
            yield saver

    @checkpointer_test(name="LatestCheckpointCache(BoundedSqliteSaver)")
    async def cached() -> AsyncIterator[LatestCheckpointCache]:
        async with BoundedSqliteSaver.open(next(paths), keep=None) as saver:
            yield LatestCheckpointCache(saver)

    baseline, wrapped = await validate(plain), await validate(cached)
    wrapped.print_report()
    assert outcome(wrapped) == outcome(baseline)
    assert all(failures == 0 for _, failures in outcome(wrapped).values())
    detected = {name for name, (found, _) in outcome(wrapped).items() if found}
    assert detected >= {
        "put",
        "put_writes",
        "get_tuple",
        "list",
        "delete_thread",
        "delete_for_runs",
        "copy_thread",
        "prune",
    }


def checkpoint(value: int) -> dict[str, Any]:
    return {
        "v": 4,
        "id": str(uuid6()),
        "ts": "2026-11-24T00:00:00+00:00",
        "channel_values": {"n": value, "items": [value]},
        "channel_versions": {"n": value, "items": value},
        "versions_seen": {},
        "updated_channels": ["n", "items"],
    }


async def test_latest_read_is_served_from_memory_and_equals_the_stored_one(
    tmp_path: Path,
) -> None:
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "c.db")) as inner:
        await inner.setup()
        saver = LatestCheckpointCache(inner)
        config: dict[str, Any] = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        first = await saver.aput(config, checkpoint(1), {"step": 1}, {"n": 1, "items": 1})
        second = await saver.aput(first, checkpoint(2), {"step": 2}, {"n": 2, "items": 2})

        cached = await saver.aget_tuple({"configurable": {"thread_id": "t"}})
        stored = await inner.aget_tuple({"configurable": {"thread_id": "t"}})
        assert cached is not None and stored is not None
        assert cached.config == stored.config == second
        assert cached.checkpoint == stored.checkpoint
        assert cached.metadata == stored.metadata
        assert cached.parent_config == stored.parent_config
        assert cached.pending_writes == stored.pending_writes == []

        # Callers cannot corrupt the cache by mutating what they were given.
        cached.checkpoint["channel_values"]["items"].append("mutated")
        again = await saver.aget_tuple({"configurable": {"thread_id": "t"}})
        assert again is not None and again.checkpoint["channel_values"]["items"] == [2]

        # Pending writes and deletes make the inner saver answer again.
        await saver.aput_writes(second, [("n", 3)], task_id="task")
        with_writes = await saver.aget_tuple({"configurable": {"thread_id": "t"}})
        assert with_writes is not None and [w[1:] for w in with_writes.pending_writes] == [("n", 3)]
        await saver.adelete_thread("t")
        assert await saver.aget_tuple({"configurable": {"thread_id": "t"}}) is None
