"""The objects the Agent Protocol routes call, built once in the app lifespan.

`AgentProtocol` bundles them on `app.state.agent_protocol` (the routes read it
through `get_surface`), so the surface holds no module-level state and a test can
build it around any graph and stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from agent_server.api.agent_protocol.builtin import Assistants
from agent_server.runs.threads import Threads


@dataclass(frozen=True, slots=True)
class AgentProtocol:
    assistants: Assistants
    threads: Threads
    runs: Any = None
    """The run core (`runs.runs.Runs`) once the run routes are mounted."""


async def get_surface(request: Request) -> AgentProtocol:
    """`async` so that FastAPI calls it inline, not in its thread pool."""
    return request.app.state.agent_protocol


Surface = Annotated[AgentProtocol, Depends(get_surface)]
