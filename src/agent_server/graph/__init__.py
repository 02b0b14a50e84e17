"""The agent state machine."""

from agent_server.graph.builder import build_graph
from agent_server.graph.state import AgentDeps, AgentState, RunOptions, TurnSummary, new_turn

__all__ = ["AgentDeps", "AgentState", "RunOptions", "TurnSummary", "build_graph", "new_turn"]
