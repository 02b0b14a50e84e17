"""Thread routes: create, get, patch, delete, search, count, copy, state, history.

Each route parses, makes one `Threads` call for the caller's principal, and shapes
the answer (`wire.py`). A thread id that is not a UUID cannot name a thread: 404
like any other thread the caller does not have (never 403 or 422, which would
tell ids apart).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from agent_server.api.agent_protocol.body import body_of
from agent_server.api.agent_protocol.schemas import (
    HistoryQuery,
    StateAtCheckpoint,
    StateUpdate,
    ThreadCount,
    ThreadCreate,
    ThreadPatch,
    ThreadSearch,
)
from agent_server.api.agent_protocol.surface import Surface
from agent_server.api.agent_protocol.wire import WireResponse, select, state_of, thread_of
from agent_server.api.deps import Principal
from agent_server.errors import ThreadNotFound

router = APIRouter(tags=["agent protocol"], default_response_class=WireResponse)


def thread_id_of(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ThreadNotFound(raw) from None


ThreadId = Annotated[str, Path(description="the thread (= session) id, a UUID")]


@router.post("/threads", response_model=None)
async def create(surface: Surface, principal: Principal, body: body_of(ThreadCreate)) -> Any:
    thread = await surface.threads.create(
        principal, thread_id=body.thread_id, metadata=body.metadata, if_exists=body.if_exists
    )
    return thread_of(thread)


@router.post("/threads/search", response_model=None)
async def search(
    surface: Surface, principal: Principal, body: body_of(ThreadSearch), response: Response
) -> Any:
    ids = None
    if body.ids is not None:
        ids = []
        for raw in body.ids:
            try:
                ids.append(str(uuid.UUID(raw)))
            except ValueError:
                continue  # names no thread
    threads = await surface.threads.search(
        principal,
        metadata=body.metadata,
        values=body.values,
        ids=ids,
        status=body.status,
        limit=body.limit + 1,  # one more: is there a next page?
        offset=body.offset,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
    )
    if len(threads) > body.limit:
        response.headers["X-Pagination-Next"] = str(body.offset + body.limit)
    return [select(thread_of(t), body.select) for t in threads[: body.limit]]


@router.post("/threads/count", response_model=None)
async def count(surface: Surface, principal: Principal, body: body_of(ThreadCount)) -> int:
    return await surface.threads.count(
        principal, metadata=body.metadata, values=body.values, status=body.status
    )


@router.get("/threads/{thread_id}", response_model=None)
async def get(surface: Surface, principal: Principal, thread_id: ThreadId) -> Any:
    return thread_of(await surface.threads.get(principal, thread_id_of(thread_id)))


@router.patch("/threads/{thread_id}", response_model=None)
async def patch(
    surface: Surface, principal: Principal, thread_id: ThreadId, body: body_of(ThreadPatch)
) -> Any:
    thread = await surface.threads.update(principal, thread_id_of(thread_id), body.metadata)
    return thread_of(thread)


@router.delete("/threads/{thread_id}", response_model=None, status_code=204)
async def delete(surface: Surface, principal: Principal, thread_id: ThreadId) -> Response:
    await surface.threads.delete(principal, thread_id_of(thread_id))
    return Response(status_code=204)


@router.post("/threads/{thread_id}/copy", response_model=None)
async def copy(surface: Surface, principal: Principal, thread_id: ThreadId) -> Any:
    return thread_of(await surface.threads.copy(principal, thread_id_of(thread_id)))


# --- state ---------------------------------------------------------------------


@router.get("/threads/{thread_id}/state", response_model=None)
async def state(
    surface: Surface, principal: Principal, thread_id: ThreadId, subgraphs: bool = False
) -> Any:
    snapshot = await surface.threads.state(principal, thread_id_of(thread_id), subgraphs=subgraphs)
    return state_of(snapshot)


@router.post("/threads/{thread_id}/state", response_model=None)
async def update_state(
    surface: Surface, principal: Principal, thread_id: ThreadId, body: body_of(StateUpdate)
) -> Any:
    checkpoint = await surface.threads.update_state(
        principal,
        thread_id_of(thread_id),
        body.values,
        as_node=body.as_node,
        checkpoint=body.checkpoint.config() if body.checkpoint else None,
        checkpoint_id=body.checkpoint_id,
    )
    return {"checkpoint": checkpoint}


@router.post("/threads/{thread_id}/state/checkpoint", response_model=None)
async def state_at_checkpoint(
    surface: Surface, principal: Principal, thread_id: ThreadId, body: body_of(StateAtCheckpoint)
) -> Any:
    """RemoteGraph's `get_state` (it always names a checkpoint, maybe only its thread)."""
    snapshot = await surface.threads.state(
        principal,
        thread_id_of(thread_id),
        checkpoint=body.checkpoint.config(),
        subgraphs=body.subgraphs,
    )
    return state_of(snapshot)


@router.get("/threads/{thread_id}/state/{checkpoint_id}", response_model=None)
async def state_at(
    surface: Surface,
    principal: Principal,
    thread_id: ThreadId,
    checkpoint_id: str,
    subgraphs: bool = False,
) -> Any:
    snapshot = await surface.threads.state(
        principal, thread_id_of(thread_id), checkpoint_id=checkpoint_id, subgraphs=subgraphs
    )
    return state_of(snapshot)


@router.post("/threads/{thread_id}/history", response_model=None)
async def history(
    surface: Surface, principal: Principal, thread_id: ThreadId, body: body_of(HistoryQuery)
) -> Any:
    before = body.before
    snapshots = await surface.threads.history(
        principal,
        thread_id_of(thread_id),
        limit=body.limit,
        before=before.config() if before is not None and not isinstance(before, str) else before,
        metadata=body.metadata,
        checkpoint=body.checkpoint.config() if body.checkpoint else None,
    )
    return [select(state_of(s), body.select) for s in snapshots]


@router.get("/threads/{thread_id}/history", response_model=None)
async def history_get(
    surface: Surface,
    principal: Principal,
    thread_id: ThreadId,
    limit: Annotated[int, Query(ge=0, le=1000)] = 10,
    before: str | None = None,
) -> Any:
    """The SDKs use POST; this GET takes `limit` (10, where the reference says 1 but
    both SDKs default to 10) and `before` (a checkpoint id)."""
    snapshots = await surface.threads.history(
        principal, thread_id_of(thread_id), limit=limit, before=before
    )
    return [state_of(s) for s in snapshots]
