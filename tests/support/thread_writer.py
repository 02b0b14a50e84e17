"""Puts checkpoints into a saver the way LangGraph's Pregel loop does, without a graph:
for tests that need exact control over versions, parents and namespaces."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint
from langgraph.checkpoint.base.id import uuid6


class ThreadWriter:
    """Puts successive checkpoints of one (thread, namespace) the way the Pregel loop
    does: parent linked, full channel_values, new versions only for changed channels."""

    def __init__(self, saver: BaseCheckpointSaver[Any], thread_id: str, ns: str = "") -> None:
        self.saver = saver
        self.thread_id = thread_id
        self.ns = ns
        self.values: dict[str, Any] = {}
        self.versions: dict[str, Any] = {}
        self.parent: str | None = None
        self.step = -1

    @property
    def latest(self) -> RunnableConfig:
        return {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": self.ns}}

    async def put(self, changed: dict[str, Any], **metadata: Any) -> RunnableConfig:
        self.step += 1
        self.values.update(changed)
        new_versions = {
            ch: self.saver.get_next_version(self.versions.get(ch), None) for ch in changed
        }
        self.versions.update(new_versions)
        checkpoint: Checkpoint = {
            "v": 4,
            "id": str(uuid6(clock_seq=self.step)),
            "ts": datetime.now(UTC).isoformat(),
            "channel_values": dict(self.values),
            "channel_versions": dict(self.versions),
            "versions_seen": {"node": dict(self.versions)},
            "updated_channels": list(changed),
        }
        config: RunnableConfig = {"configurable": dict(self.latest["configurable"])}
        if self.parent:
            config["configurable"]["checkpoint_id"] = self.parent
        stored = await self.saver.aput(
            config, checkpoint, {"source": "loop", "step": self.step, **metadata}, new_versions
        )
        self.parent = checkpoint["id"]
        return stored
