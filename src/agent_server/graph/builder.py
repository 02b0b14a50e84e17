"""Wires the graph: START → model → (approve → tools → model)* → persist → END."""

from __future__ import annotations

from functools import partial

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agent_server.graph.nodes.approve import approve_tools
from agent_server.graph.nodes.model import call_model
from agent_server.graph.nodes.persist import persist_turn
from agent_server.graph.nodes.tools import run_tools
from agent_server.graph.routing import route_after_approve, route_after_model
from agent_server.graph.state import AgentDeps, AgentState, RunOptions


def recursion_limit(deps: AgentDeps) -> int:
    """Enough supersteps for `max_tool_rounds` (model, approve and tools each) plus the
    final model call and persist; the model node's own round counter ends the loop first."""
    return 3 * deps.settings.max_tool_rounds + 4


def build_graph(
    deps: AgentDeps, *, checkpointer: BaseCheckpointSaver | None = None
) -> CompiledStateGraph:
    builder = StateGraph(AgentState, context_schema=RunOptions)
    builder.add_node("model", partial(call_model, deps=deps))
    builder.add_node("approve", partial(approve_tools, deps=deps))
    builder.add_node("tools", partial(run_tools, deps=deps))
    builder.add_node("persist", partial(persist_turn, deps=deps))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", route_after_model, ["approve", "persist"])
    builder.add_conditional_edges("approve", route_after_approve, ["tools", "model"])
    builder.add_edge("tools", "model")
    builder.add_edge("persist", END)
    graph = builder.compile(checkpointer=checkpointer, name="agent")
    return graph.with_config(recursion_limit=recursion_limit(deps))
