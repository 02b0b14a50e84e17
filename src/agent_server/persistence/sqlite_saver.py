"""`BoundedSqliteSaver`: LangGraph's `AsyncSqliteSaver` keeping only the newest
checkpoints of each thread.

Why: the SQLite saver never deletes a checkpoint and every row holds the whole
state (up to twice `HISTORY_WINDOW` messages), so the embedded default's checkpoint
file grew with every turn, forever (measured: 300 turns of one session left 3.5 MB,
~12 KB a turn; 0.32 MB with `keep=20`, at the same time per turn). The Redis saver
bounds each thread to `CHECKPOINTS_PER_THREAD`; this applies the same bound here.

How: after every `every`-th write of a thread (`keep // 4`, at least 1) the
commit of that write also deletes that thread's checkpoints older than its `keep`
newest, and their pending writes. A thread so holds at most `keep + every - 1`
checkpoints, and most turns pay nothing extra. Checkpoint ids are uuid6 strings,
which sort by time: LangGraph's own "latest" query relies on the same order.

Writes (`aput`, `aput_writes`) go through `GroupCommit`: the same rows as
`AsyncSqliteSaver` writes, but the writes of concurrent steps and runs share one
transaction, and `synchronous=NORMAL` (as the transcript database has, `db.py`):
in WAL mode a commit is then safe against the process dying, not against the
machine losing power, and costs no fsync. Inside `deferred(thread_id)` (a run with
`durability="async"`) that thread's writes do not wait for their commit; every
read, delete and copy first waits for the writes accepted before it.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from cachetools import LRUCache
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agent_server.persistence.deferred_writes import deferral
from agent_server.persistence.group_commit import GroupCommit, Row

TRACKED_THREADS = 10_000
"""Threads whose write count since their last prune is remembered. A thread that
falls out starts counting again: pruned later, never wrongly."""

# The same statements as `AsyncSqliteSaver.aput` / `aput_writes`.
_PUT_CHECKPOINT = (
    "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
    "parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_WRITE_COLUMNS = (
    "INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, "
    "channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PUT_WRITES_REPLACE = f"INSERT OR REPLACE {_WRITE_COLUMNS}"
_PUT_WRITES_IGNORE = f"INSERT OR IGNORE {_WRITE_COLUMNS}"
# A prune (alone, or inside a write's transaction): the cutoff as a subquery (NULL,
# so nothing deleted, while the thread holds `keep` or fewer). Writes first: they
# need the checkpoints' cutoff.
_CUTOFF_SUBQUERY = (
    "(SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
    "ORDER BY checkpoint_id DESC LIMIT 1 OFFSET ?)"
)
_PRUNE_WRITES = (
    "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? "
    f"AND checkpoint_id < {_CUTOFF_SUBQUERY}"
)
_PRUNE_CHECKPOINTS = (
    "DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
    f"AND checkpoint_id < {_CUTOFF_SUBQUERY}"
)


def _cutoff(thread_id: str, checkpoint_ns: str, keep: int) -> tuple[str, str, str, str, int]:
    """The parameters of `_PRUNE_WRITES` / `_PRUNE_CHECKPOINTS`."""
    return (thread_id, checkpoint_ns, thread_id, checkpoint_ns, keep - 1)


_RUN_CHECKPOINTS = (
    "SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints "
    "WHERE json_extract(CAST(metadata AS TEXT), '$.run_id') = ?"
)
_DELETE_CHECKPOINT_WRITES = (
    "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"
)
_DELETE_CHECKPOINT = (
    "DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"
)
_COPY_CHECKPOINTS = (
    "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
    "parent_checkpoint_id, type, checkpoint, metadata) SELECT ?, checkpoint_ns, checkpoint_id, "
    "parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints WHERE thread_id = ?"
)
_COPY_WRITES = (
    "INSERT OR REPLACE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, "
    "task_path, idx, channel, type, value) SELECT ?, checkpoint_ns, checkpoint_id, task_id, "
    "task_path, idx, channel, type, value FROM writes WHERE thread_id = ?"
)
_NAMESPACES = "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = ?"


class BoundedSqliteSaver(AsyncSqliteSaver):
    """`keep=None` keeps everything, as `AsyncSqliteSaver` does.

    Also implements the saver methods `AsyncSqliteSaver` leaves to the base class's
    `NotImplementedError`, which a run rollback (`adelete_for_runs`) and a thread copy
    (`acopy_thread`) need. LangGraph puts the run id into each checkpoint's metadata.
    """

    def __init__(self, conn: aiosqlite.Connection, *, keep: int | None = None) -> None:
        super().__init__(conn)
        if keep is not None and keep < 1:
            raise ValueError("keep must be at least 1 (or None to keep every checkpoint)")
        self.keep = keep
        self.every = max(1, keep // 4) if keep else 0
        self._writes_since_prune: LRUCache[tuple[str, str], int] = LRUCache(TRACKED_THREADS)
        self._commits = GroupCommit(conn, self.lock)
        self._deferred: Counter[str] = Counter()

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path, *, keep: int | None) -> AsyncIterator[BoundedSqliteSaver]:
        async with aiosqlite.connect(str(path)) as conn:
            saver = cls(conn, keep=keep)
            await saver.setup()
            await conn.execute("PRAGMA synchronous=NORMAL")
            try:
                yield saver
            finally:
                await saver._commits.drain()

    def deferred(self, thread_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """`thread_id`'s writes commit in the background until the block ends, then
        all at once; a write that failed raises there (`deferred_writes.py`)."""

        def begin() -> None:
            self._deferred[thread_id] += 1

        async def end() -> None:
            self._deferred[thread_id] -= 1
            if self._deferred[thread_id] <= 0:
                del self._deferred[thread_id]
            await self._commits.flush(thread_id)

        return deferral(thread_id, begin, end)

    async def _write(self, thread_id: str, statements: list[tuple[str, list[Row]]]) -> None:
        if thread_id in self._deferred:
            self._commits.defer(thread_id, statements)
        else:
            await self._commits.submit(statements)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        await self._commits.settled()
        return await super().aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        await self._commits.settled()
        async for item in super().alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Any:
        await self._commits.settled()
        return await super().aget_delta_channel_history(config=config, channels=channels)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._commits.settled()
        await super().adelete_thread(thread_id)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        await self.setup()
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        checkpoint_ns = configurable["checkpoint_ns"]
        type_, blob = self.serde.dumps_typed(checkpoint)
        meta = json.dumps(get_checkpoint_metadata(config, metadata), ensure_ascii=False)
        row = (
            thread_id,
            checkpoint_ns,
            checkpoint["id"],
            configurable.get("checkpoint_id"),
            type_,
            blob,
            meta.encode("utf-8", "ignore"),
        )
        statements: list[tuple[str, list[Row]]] = [(_PUT_CHECKPOINT, [row])]
        if self.keep is not None:
            key = (thread_id, str(checkpoint_ns))
            writes = self._writes_since_prune.get(key, 0) + 1
            if writes >= self.every:
                cutoff = _cutoff(*key, self.keep)
                statements += [(_PRUNE_WRITES, [cutoff]), (_PRUNE_CHECKPOINTS, [cutoff])]
                writes = 0
            self._writes_since_prune[key] = writes
        await self._write(thread_id, statements)
        return {
            "configurable": {
                "thread_id": configurable["thread_id"],
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self.setup()
        configurable = config["configurable"]
        sql = (
            _PUT_WRITES_REPLACE
            if all(channel in WRITES_IDX_MAP for channel, _ in writes)
            else _PUT_WRITES_IGNORE
        )
        rows = [
            (
                str(configurable["thread_id"]),
                str(configurable["checkpoint_ns"]),
                str(configurable["checkpoint_id"]),
                task_id,
                task_path,
                WRITES_IDX_MAP.get(channel, idx),
                channel,
                *self.serde.dumps_typed(value),
            )
            for idx, (channel, value) in enumerate(writes)
        ]
        await self._write(str(configurable["thread_id"]), [(sql, rows)])

    async def prune_thread(
        self, thread_id: str, checkpoint_ns: str = "", *, keep: int | None = None
    ) -> int:
        """Delete the checkpoints of one thread and namespace older than its `keep`
        (default: the saver's) newest, with their pending writes. Returns how many went."""
        keep = keep or self.keep
        if keep is None:
            return 0
        await self.setup()
        await self._commits.settled()
        cutoff = _cutoff(thread_id, checkpoint_ns, keep)
        async with self.lock:
            await self.conn.execute(_PRUNE_WRITES, cutoff)
            async with self.conn.execute(_PRUNE_CHECKPOINTS, cutoff) as cursor:
                deleted = cursor.rowcount
            await self.conn.commit()
        return deleted

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self.setup()
        await self._commits.settled()
        async with self.lock:
            for run_id in run_ids:
                async with self.conn.execute(_RUN_CHECKPOINTS, (str(run_id),)) as cursor:
                    rows = await cursor.fetchall()
                for row in rows:
                    await self.conn.execute(_DELETE_CHECKPOINT_WRITES, tuple(row))
                    await self.conn.execute(_DELETE_CHECKPOINT, tuple(row))
            await self.conn.commit()

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.setup()
        await self._commits.settled()
        async with self.lock:
            await self.conn.execute(_COPY_CHECKPOINTS, (target_thread_id, source_thread_id))
            await self.conn.execute(_COPY_WRITES, (target_thread_id, source_thread_id))
            await self.conn.commit()

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """`keep_latest`: only each namespace's newest checkpoint stays; `delete`: all go."""
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.adelete_thread(str(thread_id))
                continue
            await self.setup()
            await self._commits.settled()
            async with self.lock, self.conn.execute(_NAMESPACES, (str(thread_id),)) as cursor:
                namespaces = [row[0] for row in await cursor.fetchall()]
            for namespace in namespaces:
                await self.prune_thread(str(thread_id), namespace, keep=1)
