"""The store routes Studio's Memory tab calls, answered empty.

The graph keeps no long-term memory store, so there is nothing to list; a 404 here
broke Studio's Memory tab (Aegra commit 07d987a), an empty answer shows "no
memories", which is the truth.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from agent_server.api.agent_protocol.body import body_of
from agent_server.api.agent_protocol.schemas import StoreNamespaces, StoreSearch

router = APIRouter(tags=["agent protocol"])


@router.post("/store/namespaces", response_model=None)
async def namespaces(body: body_of(StoreNamespaces)) -> dict[str, list[Any]]:
    return {"namespaces": []}


@router.post("/store/items/search", response_model=None)
async def search_items(body: body_of(StoreSearch)) -> dict[str, list[Any]]:
    return {"items": []}
