"""The tools the agent can call, with their JSON schemas."""

from __future__ import annotations

from fastapi import APIRouter

from agent_server.api.deps import AppResources
from agent_server.api.rest.schemas import ToolList, ToolOut

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/tools", response_model=ToolList)
async def list_tools(resources: AppResources) -> ToolList:
    registry = resources.deps.tools
    tools = []
    for name in registry.names:
        function = registry.schema(name)["function"]
        tools.append(
            ToolOut(
                name=name,
                description=function.get("description", ""),
                parameters=function.get("parameters", {}),
            )
        )
    return ToolList(tools=tools)
