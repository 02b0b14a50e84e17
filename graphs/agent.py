"""The graph for LangGraph Studio / `langgraph dev`.

Thin on purpose: settings → resources → builder. No checkpointer here: the
LangGraph server brings its own.
"""

from agent_server.config import Settings
from agent_server.graph.builder import build_graph
from agent_server.resources import build_resources

graph = build_graph(build_resources(Settings()).deps)
