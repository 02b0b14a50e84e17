"""`BoundedSqliteSaver`: LangGraph's `AsyncSqliteSaver` keeping only the newest
checkpoints of each thread.

Why: the SQLite saver never deletes a checkpoint and every row holds the whole
state (up to twice `HISTORY_WINDOW` messages), so the embedded default's checkpoint
file grew with every turn, forever (measured: 300 turns of one session left 3.5 MB,
~12 KB a turn; 0.32 MB with `keep=20`, at the same time per turn). The Redis saver
bounds each thread to `CHECKPOINTS_PER_THREAD`; this applies the same bound here.

How: after every `every`-th write of a thread (`keep // 4`, at least 1) one
transaction deletes that thread's checkpoints older than its `keep` newest, and
their pending writes. A thread so holds at most `keep + every - 1` checkpoints, and
most turns pay nothing extra. Checkpoint ids are uuid6 strings, which sort by time:
LangGraph's own "latest" query relies on the same order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
from cachetools import LRUCache
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

TRACKED_THREADS = 10_000
"""Threads whose write count since their last prune is remembered. A thread that
falls out starts counting again: pruned later, never wrongly."""

_CUTOFF = (
    "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
    "ORDER BY checkpoint_id DESC LIMIT 1 OFFSET ?"
)
_DELETE_WRITES = (
    "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id < ?"
)
_DELETE_CHECKPOINTS = (
    "DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id < ?"
)


class BoundedSqliteSaver(AsyncSqliteSaver):
    """`keep=None` keeps everything, as `AsyncSqliteSaver` does."""

    def __init__(self, conn: aiosqlite.Connection, *, keep: int | None = None) -> None:
        super().__init__(conn)
        if keep is not None and keep < 1:
            raise ValueError("keep must be at least 1 (or None to keep every checkpoint)")
        self.keep = keep
        self.every = max(1, keep // 4) if keep else 0
        self._writes_since_prune: LRUCache[tuple[str, str], int] = LRUCache(TRACKED_THREADS)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path, *, keep: int | None) -> AsyncIterator[BoundedSqliteSaver]:
        async with aiosqlite.connect(str(path)) as conn:
            saver = cls(conn, keep=keep)
            await saver.setup()
            yield saver

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        stored = await super().aput(config, checkpoint, metadata, new_versions)
        if self.keep is not None:
            configurable = config["configurable"]
            key = (str(configurable["thread_id"]), str(configurable.get("checkpoint_ns", "")))
            writes = self._writes_since_prune.get(key, 0) + 1
            if writes >= self.every:
                await self.prune_thread(*key)
                writes = 0
            self._writes_since_prune[key] = writes
        return stored

    async def prune_thread(self, thread_id: str, checkpoint_ns: str = "") -> int:
        """Delete the checkpoints of one thread and namespace older than its `keep`
        newest, with their pending writes. Returns how many checkpoints went."""
        if self.keep is None:
            return 0
        await self.setup()
        async with self.lock:
            async with self.conn.execute(
                _CUTOFF, (thread_id, checkpoint_ns, self.keep - 1)
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:  # `keep` or fewer
                return 0
            cutoff = (thread_id, checkpoint_ns, row[0])
            await self.conn.execute(_DELETE_WRITES, cutoff)
            async with self.conn.execute(_DELETE_CHECKPOINTS, cutoff) as cursor:
                deleted = cursor.rowcount
            await self.conn.commit()
        return deleted
