"""Edges that depend on state."""

from __future__ import annotations

from typing import Literal

from langchain_core.messages import AIMessage

from agent_server.graph.state import AgentState


def route_after_model(state: AgentState) -> Literal["tools", "persist"]:
    """Run tools when the model asked for them, otherwise close the turn."""
    last = state["messages"][-1] if state.get("messages") else None
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else "persist"
