"""Assistant routes: search, count, get, graph drawing, schemas, subgraphs, versions.

The assistants are the built-in ones (`builtin.py`); the routes that would create,
change or delete assistants are not served (nothing in Studio's, the SDKs' or Agent
Chat UI's main paths needs them).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from agent_server.api.agent_protocol.body import body_of
from agent_server.api.agent_protocol.schemas import (
    AssistantCount,
    AssistantLatest,
    AssistantSearch,
    AssistantVersions,
)
from agent_server.api.agent_protocol.surface import Surface
from agent_server.api.agent_protocol.wire import WireResponse, select
from agent_server.errors import InvalidRequest

router = APIRouter(tags=["agent protocol"], default_response_class=WireResponse)


def paginate(items: list[Any], limit: int, offset: int, response: Response) -> list[Any]:
    """`items[offset:offset+limit]`, with the headers the SDKs read for
    `response_format="object"` (`X-Pagination-Next` only when there is more)."""
    page = items[offset : offset + limit]
    response.headers["X-Pagination-Total"] = str(len(items))
    if offset + limit < len(items):
        response.headers["X-Pagination-Next"] = str(offset + limit)
    return page


@router.post("/assistants/search", response_model=None)
async def search(
    surface: Surface, body: body_of(AssistantSearch), response: Response
) -> list[dict[str, Any]]:
    found = surface.assistants.search(
        graph_id=body.graph_id, name=body.name, metadata=body.metadata
    )
    items = [a.wire() for a in found]
    if body.sort_by:
        items.sort(key=lambda a: str(a[body.sort_by]), reverse=body.sort_order == "desc")
    return [select(a, body.select) for a in paginate(items, body.limit, body.offset, response)]


@router.post("/assistants/count", response_model=None)
async def count(surface: Surface, body: body_of(AssistantCount)) -> int:
    return len(
        surface.assistants.search(graph_id=body.graph_id, name=body.name, metadata=body.metadata)
    )


@router.get("/assistants/{assistant_id}", response_model=None)
async def get(surface: Surface, assistant_id: str) -> dict[str, Any]:
    return surface.assistants.get(assistant_id).wire()


def parse_xray(value: str | None) -> bool | int:
    """`true`/`false`, or a positive depth (langgraph-api's rules)."""
    if value is None or value in ("", "false", "False"):
        return False
    if value in ("true", "True"):
        return True
    try:
        depth = int(value)
    except ValueError:
        depth = 0
    if depth <= 0:
        raise InvalidRequest("xray must be true, false or a positive integer")
    return depth


@router.get("/assistants/{assistant_id}/graph", response_model=None)
async def graph(
    surface: Surface,
    assistant_id: str,
    xray: Annotated[str | None, Query(description="true, false or a depth")] = None,
) -> dict[str, Any]:
    return surface.assistants.get(assistant_id).drawable(parse_xray(xray))


@router.get("/assistants/{assistant_id}/schemas", response_model=None)
async def schemas(surface: Surface, assistant_id: str) -> dict[str, Any]:
    assistants = surface.assistants
    return assistants.schemas(assistants.get(assistant_id))


@router.get("/assistants/{assistant_id}/subgraphs", response_model=None)
@router.get("/assistants/{assistant_id}/subgraphs/{namespace}", response_model=None)
async def subgraphs(
    surface: Surface, assistant_id: str, namespace: str | None = None, recurse: bool = False
) -> dict[str, Any]:
    """`{namespace: schemas}` of the graph's subgraphs (`{}`: ours has none)."""
    assistant = surface.assistants.get(assistant_id)
    return {
        ns: {"graph_id": assistant.graph_id}
        async for ns, _ in assistant.graph.aget_subgraphs(namespace=namespace, recurse=recurse)
    }


@router.post("/assistants/{assistant_id}/versions", response_model=None)
async def versions(
    surface: Surface, assistant_id: str, body: body_of(AssistantVersions)
) -> list[dict[str, Any]]:
    """One version per built-in assistant: itself."""
    wire = surface.assistants.get(assistant_id).wire()
    matches = all(wire["metadata"].get(k) == v for k, v in body.metadata.items())
    versions = [wire] if matches else []
    return versions[body.offset : body.offset + body.limit]


@router.post("/assistants/{assistant_id}/latest", response_model=None)
async def latest(
    surface: Surface, assistant_id: str, body: body_of(AssistantLatest)
) -> dict[str, Any]:
    wire = surface.assistants.get(assistant_id).wire()
    if body.version != wire["version"]:
        raise InvalidRequest(f"assistant {assistant_id!r} has only version 1")
    return wire
