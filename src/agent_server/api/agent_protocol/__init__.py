"""The LangGraph Platform API ("Agent Protocol") at the server root, beside `/api`.

What LangGraph Studio, langgraph-sdk (Python and JS), RemoteGraph and Agent Chat UI
call (`AGENT-PROTOCOL.md`), over the same sessions as `/api`: a thread is a session.
One module per resource; `surface.py` holds the objects the routes call.
"""

from __future__ import annotations

from fastapi import APIRouter

from agent_server.api.agent_protocol import assistants, info, runs, stateless, store, threads
from agent_server.api.agent_protocol.surface import AgentProtocol

AUTHENTICATED: tuple[APIRouter, ...] = (
    info.router,
    assistants.router,
    threads.router,
    runs.router,
    stateless.router,
    store.router,
)
"""Routers behind the same key as `/api` (and ownership on every thread and run)."""
OPEN: tuple[APIRouter, ...] = (info.probe,)

__all__ = ["AUTHENTICATED", "OPEN", "AgentProtocol"]
