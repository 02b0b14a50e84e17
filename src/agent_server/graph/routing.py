"""Edges that depend on state."""

from __future__ import annotations

from typing import Literal

from langchain_core.messages import AIMessage

from agent_server.graph.state import AgentState
from agent_server.graph.tool_calls import unanswered_calls


def route_after_model(state: AgentState) -> Literal["approve", "persist"]:
    """Tool calls go past the approve node (a no-op when none needs a person);
    otherwise close the turn."""
    last = state["messages"][-1] if state.get("messages") else None
    return "approve" if isinstance(last, AIMessage) and last.tool_calls else "persist"


def route_after_approve(state: AgentState) -> Literal["tools", "model"]:
    """Run the calls still waiting for a result; if a person denied them all, the
    model reads the refusals and carries on."""
    return "tools" if unanswered_calls(state.get("messages", [])) else "model"
