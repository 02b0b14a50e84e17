"""A checkpointer wrapper that times every operation into a Prometheus histogram.

Delegation rather than subclassing each saver: the same wrapper measures the
SQLite and Redis savers alike, and the savers stay free of metrics code.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import contextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from prometheus_client import Histogram

from agent_server.persistence.deferred_writes import deferred_writes


class InstrumentedSaver(BaseCheckpointSaver):
    """Forwards every async method of the saver API: one it lacked would fall back to
    `BaseCheckpointSaver`'s `NotImplementedError` even where the inner saver has it."""

    def __init__(self, inner: BaseCheckpointSaver, latency: Histogram) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self._latency = latency

    @contextmanager
    def _timed(self, operation: str):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            yield
        finally:
            self._latency.labels(operation).observe(time.perf_counter() - started)

    @property
    def config_specs(self) -> list[Any]:
        return self.inner.config_specs

    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.inner.get_next_version(current, channel)

    def deferred(self, thread_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        return deferred_writes(self.inner, thread_id)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        with self._timed("get_tuple"):
            return await self.inner.aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        with self._timed("list"):
            async for item in self.inner.alist(config, filter=filter, before=before, limit=limit):
                yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        with self._timed("put"):
            return await self.inner.aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        with self._timed("put_writes"):
            await self.inner.aput_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        with self._timed("delete_thread"):
            await self.inner.adelete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        with self._timed("delete_for_runs"):
            await self.inner.adelete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        with self._timed("copy_thread"):
            await self.inner.acopy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        with self._timed("prune"):
            await self.inner.aprune(thread_ids, strategy=strategy)
