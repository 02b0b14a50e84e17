"""JSON on the Agent Protocol wire: the encoder and the resource shapes clients read.

The shapes are langgraph-api's (`AGENT-PROTOCOL.md` §2), because that is what
langgraph-sdk, RemoteGraph and Studio parse: a `Thread`, a `ThreadState` built
from LangGraph's `StateSnapshot` the way `langgraph_api/state.py` builds it
(checkpoint dicts, tasks, plain interrupt dicts that RemoteGraph turns back into
`Interrupt(**i)`), LangChain messages as their `model_dump()`.
"""

from __future__ import annotations

from typing import Any

import orjson
from langgraph.types import StateSnapshot
from starlette.responses import JSONResponse

from agent_server.runs.serialize import jsonable
from agent_server.runs.threads import Thread


def encode(obj: Any) -> bytes:
    """orjson for what it knows (dicts, lists, datetimes, UUIDs, dataclasses such as
    `Interrupt`), `jsonable` for the rest (messages, `Send`, exceptions…)."""
    return orjson.dumps(obj, default=jsonable, option=orjson.OPT_NON_STR_KEYS)


class WireResponse(JSONResponse):
    """A JSON response encoded with `encode`. Routes using it declare
    `response_model=None`: FastAPI would otherwise walk every value through
    `jsonable_encoder` first (slow, and blind to LangGraph's types)."""

    def render(self, content: Any) -> bytes:
        return encode(content)


def checkpoint_of(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """`{thread_id, checkpoint_ns, checkpoint_id[, checkpoint_map]}` of a config, or
    None when it names no checkpoint (a fresh thread's state)."""
    configurable = (config or {}).get("configurable") or {}
    if not configurable.get("thread_id") or not configurable.get("checkpoint_id"):
        return None
    checkpoint = {
        "thread_id": configurable["thread_id"],
        "checkpoint_ns": configurable.get("checkpoint_ns") or "",
        "checkpoint_id": configurable["checkpoint_id"],
    }
    if "checkpoint_map" in configurable:
        checkpoint["checkpoint_map"] = configurable["checkpoint_map"]
    return checkpoint


def interrupt_of(interrupt: Any) -> dict[str, Any]:
    if isinstance(interrupt, dict):
        return interrupt
    return {"id": getattr(interrupt, "id", None), "value": getattr(interrupt, "value", None)}


def state_of(snapshot: StateSnapshot) -> dict[str, Any]:
    """A `ThreadState` (`/state`, `/history` items)."""
    config = snapshot.config
    parent = snapshot.parent_config
    return {
        "values": snapshot.values if snapshot.values is not None else {},
        "next": list(snapshot.next),
        "tasks": [
            {
                "id": task.id,
                "name": task.name,
                "path": list(task.path),
                "error": task.error if task.error is None else jsonable(task.error),
                "interrupts": [interrupt_of(i) for i in task.interrupts],
                "checkpoint": task.state["configurable"]
                if task.state is not None and not isinstance(task.state, StateSnapshot)
                else None,
                "state": state_of(task.state) if isinstance(task.state, StateSnapshot) else None,
                "result": getattr(task, "result", None),
            }
            for task in snapshot.tasks
        ],
        "metadata": dict(snapshot.metadata) if snapshot.metadata is not None else None,
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint_of(config) if snapshot.created_at is not None else None,
        "parent_checkpoint": checkpoint_of(parent),
        "interrupts": [interrupt_of(i) for i in getattr(snapshot, "interrupts", ())],
        # Deprecated in the reference, still read by older clients.
        "checkpoint_id": ((config or {}).get("configurable") or {}).get("checkpoint_id")
        if snapshot.created_at is not None
        else None,
        "parent_checkpoint_id": ((parent or {}).get("configurable") or {}).get("checkpoint_id"),
    }


def thread_of(thread: Thread) -> dict[str, Any]:
    """A `Thread` (reference extras included: `config`, `error`, `state_updated_at`)."""
    return {
        "thread_id": thread.thread_id,
        "created_at": thread.created_at,
        "updated_at": thread.updated_at,
        "state_updated_at": thread.updated_at,
        "metadata": thread.metadata,
        "status": thread.status,
        "config": {},
        "values": thread.values,
        "interrupts": {
            task: [interrupt_of(i) for i in items] for task, items in thread.interrupts.items()
        },
        "error": thread.error,
    }


def select(item: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """`select`: only the named fields (all when none are named)."""
    if not fields:
        return item
    return {key: value for key, value in item.items() if key in fields}
