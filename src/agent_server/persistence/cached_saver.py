"""Each session's latest checkpoint, served from memory (embedded mode).

Why: a turn starts by loading its thread's latest checkpoint. From the embedded
SQLite file that is two queries through aiosqlite's worker thread (~0.45 ms on the
way to the first streamed token) for data this process wrote itself one turn
earlier. Without `REDIS_URL` this process is the only writer of that file
(replicas need Redis), so remembering what it last wrote is exact.

What: a write-through wrapper. `aput` writes to the inner saver first, then keeps
the checkpoint serialized (as `InMemorySaver` does, so no caller can mutate the
cached copy). A read of a thread's latest checkpoint in the root namespace is
answered from memory; every other read goes to the inner saver. Anything that
could make the memory stale (pending writes, deletes, copies, prunes) forgets the
thread first. Bounded: least recently used threads are forgotten.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_metadata,
)

from agent_server.persistence.deferred_writes import deferred_writes

DEFAULT_CAPACITY = 2_000
"""Threads kept; a 20-message checkpoint serializes to a few KB."""


@dataclass(frozen=True, slots=True)
class _Latest:
    config: RunnableConfig
    checkpoint: tuple[str, bytes]
    metadata: CheckpointMetadata
    parent_config: RunnableConfig | None


class LatestCheckpointCache(BaseCheckpointSaver):
    def __init__(self, inner: BaseCheckpointSaver, *, capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self._capacity = capacity
        self._latest: OrderedDict[str, _Latest] = OrderedDict()
        # Checkpoints that got pending writes. LangGraph may write a task's writes (an
        # interrupt) while, or even before, `aput` of the checkpoint they belong to
        # returns: caching that checkpoint with no pending writes would hide the
        # interrupt (a paused run would look finished).
        self._written: OrderedDict[tuple[str, str], None] = OrderedDict()

    @property
    def config_specs(self) -> list[Any]:
        return self.inner.config_specs

    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.inner.get_next_version(current, channel)

    def _forget(self, thread_id: str) -> None:
        self._latest.pop(thread_id, None)

    def deferred(self, thread_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        return deferred_writes(self.inner, thread_id)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = config.get("configurable") or {}
        thread_id = configurable.get("thread_id")
        latest = (
            thread_id is not None
            and not configurable.get("checkpoint_id")
            and not configurable.get("checkpoint_ns")
        )
        if latest and (entry := self._latest.get(str(thread_id))) is not None:
            self._latest.move_to_end(str(thread_id))
            return CheckpointTuple(
                config=entry.config,
                checkpoint=self.serde.loads_typed(entry.checkpoint),
                metadata=entry.metadata,
                parent_config=entry.parent_config,
                pending_writes=[],
            )
        return await self.inner.aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for item in self.inner.alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        configurable = config.get("configurable") or {}
        thread_id = str(configurable.get("thread_id"))
        self._forget(thread_id)  # stale from here on, whatever the write's outcome
        next_config = await self.inner.aput(config, checkpoint, metadata, new_versions)
        written = (thread_id, str(next_config["configurable"].get("checkpoint_id")))
        if not configurable.get("checkpoint_ns") and written not in self._written:
            parent = configurable.get("checkpoint_id")
            self._latest[thread_id] = _Latest(
                config=next_config,
                checkpoint=self.serde.dumps_typed(checkpoint),
                metadata=get_checkpoint_metadata(config, metadata),
                parent_config=(
                    {
                        "configurable": {
                            "thread_id": thread_id,
                            "checkpoint_ns": "",
                            "checkpoint_id": parent,
                        }
                    }
                    if parent
                    else None
                ),
            )
            while len(self._latest) > self._capacity:
                self._latest.popitem(last=False)
        return next_config

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        # The cached tuple has no pending writes: let the inner saver answer from now on.
        configurable = config.get("configurable") or {}
        thread_id = str(configurable.get("thread_id"))
        self._forget(thread_id)
        self._written[(thread_id, str(configurable.get("checkpoint_id")))] = None
        while len(self._written) > self._capacity:
            self._written.popitem(last=False)
        await self.inner.aput_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self._forget(thread_id)
        await self.inner.adelete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        # Which threads those runs wrote to is the inner saver's to know: forget them all.
        self._latest.clear()
        await self.inner.adelete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._forget(target_thread_id)
        await self.inner.acopy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        for thread_id in thread_ids:
            self._forget(str(thread_id))
        await self.inner.aprune(thread_ids, strategy=strategy)
