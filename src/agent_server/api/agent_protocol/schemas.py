"""Request bodies of the Agent Protocol routes (langgraph-api's shapes).

Two rules from the clients (`AGENT-PROTOCOL.md` §3): unknown keys are accepted and
ignored (a newer SDK adding a field must not get 422), and `null` means "not given"
(the JS SDK sends what the caller set, `null`s included), so every field has a
default that a `null` falls back to.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


def canonical_uuid(value: str) -> str:
    """Ids are UUIDs (the reference 422s anything else); kept in canonical form."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a UUID") from exc


Limit = Field(default=10, ge=0, le=1000)
Offset = Field(default=0, ge=0, le=1_000_000_000)  # past any list, within 64-bit SQL ints
SortOrder = Literal["asc", "desc"]
ThreadStatus = Literal["idle", "busy", "interrupted", "error"]


# --- assistants ---------------------------------------------------------------


class AssistantSearch(Body):
    graph_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    limit: int = Limit
    offset: int = Offset
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: SortOrder | None = None
    select: list[str] | None = None


class AssistantCount(Body):
    graph_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class AssistantVersions(Body):
    metadata: dict[str, Any] = Field(default_factory=dict)
    limit: int = Limit
    offset: int = Offset


class AssistantLatest(Body):
    version: int = 1


# --- threads ------------------------------------------------------------------


class ThreadCreate(Body):
    thread_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"
    ttl: Any = None
    supersteps: list[Any] | None = None

    @field_validator("thread_id")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        return None if value is None else canonical_uuid(value)


class ThreadPatch(Body):
    metadata: dict[str, Any] = Field(default_factory=dict)
    ttl: Any = None


class ThreadSearch(Body):
    metadata: dict[str, Any] = Field(default_factory=dict)
    values: dict[str, Any] | None = None
    ids: list[str] | None = None
    status: ThreadStatus | None = None
    limit: int = Limit
    offset: int = Offset
    sort_by: Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"] = (
        "updated_at"
    )
    sort_order: SortOrder = "desc"
    select: list[str] | None = None
    extract: dict[str, str] | None = None


class ThreadCount(Body):
    metadata: dict[str, Any] = Field(default_factory=dict)
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None


class CheckpointRef(Body):
    """`{thread_id?, checkpoint_ns?, checkpoint_id?, checkpoint_map?}` of the wire."""

    thread_id: str | None = None
    checkpoint_ns: str = ""
    checkpoint_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap_config(cls, data: Any) -> Any:
        """A RunnableConfig (`{"configurable": {...}}`) names the same checkpoint: the
        JS SDK types `before` that way (Studio, useStream)."""
        if isinstance(data, dict) and isinstance(data.get("configurable"), dict):
            return {**data["configurable"]}
        return data

    def config(self) -> dict[str, Any]:
        """The keys that address a checkpoint (the path's thread id is the one used)."""
        return self.model_dump(include={"checkpoint_ns", "checkpoint_id", "checkpoint_map"})


class StateAtCheckpoint(Body):
    checkpoint: CheckpointRef = Field(default_factory=CheckpointRef)
    subgraphs: bool = False


class StateUpdate(Body):
    values: dict[str, Any] | list[Any] | None = None
    as_node: str | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None


class HistoryQuery(Body):
    limit: int = Limit
    before: CheckpointRef | str | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None
    select: list[str] | None = None


# --- store (Studio's Memory tab) ----------------------------------------------


class StoreNamespaces(Body):
    prefix: list[str] | None = None
    suffix: list[str] | None = None
    max_depth: int | None = None
    limit: int = Field(default=100, ge=0, le=1000)
    offset: int = Offset


class StoreSearch(Body):
    namespace_prefix: list[str] | None = None
    filter: dict[str, Any] | None = None
    query: str | None = None
    limit: int = Limit
    offset: int = Offset


# --- runs -----------------------------------------------------------------------


class RunConfig(Body):
    configurable: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    recursion_limit: int | None = Field(default=None, ge=1, le=10_000)


StreamModeName = Literal[
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "custom",
    "events",
    "debug",
    "tasks",
    "checkpoints",
]


class RunCreate(Body):
    """`POST /threads/{id}/runs[/stream|/wait]` and `POST /runs[/stream|/wait]`.

    Defaults are the reference's: `multitask_strategy="enqueue"`,
    `on_disconnect="continue"`, `if_not_exists="reject"`, `stream_mode=["values"]`.
    Accepted and ignored: `stream_resumable` (every run's events are kept for
    replay), `after_seconds`, `webhook`, `feedback_keys`, `langsmith_tracer`,
    `checkpoint_during`, `strict_resume` and any key a newer SDK adds.
    """

    assistant_id: str
    input: Any = None
    command: dict[str, Any] | None = None
    stream_mode: StreamModeName | list[StreamModeName] = Field(default_factory=lambda: ["values"])
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    on_disconnect: Literal["cancel", "continue"] = "continue"
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] = "enqueue"
    if_not_exists: Literal["reject", "create"] = "reject"
    on_completion: Literal["delete", "keep"] = "delete"
    config: RunConfig = Field(default_factory=RunConfig)
    context: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    durability: Literal["sync", "async", "exit"] | None = None

    def modes(self) -> frozenset[str]:
        """The wire stream modes asked for."""
        modes = [self.stream_mode] if isinstance(self.stream_mode, str) else self.stream_mode
        return frozenset(modes or ["values"])
