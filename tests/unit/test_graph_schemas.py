"""The graph's JSON schemas (Studio's `/assistants/{id}/schemas`) on Python 3.11.

pydantic refuses `typing.TypedDict` before Python 3.12 ("use
typing_extensions.TypedDict"), so a state declared with it makes every schema call
raise on our floor version and in the Docker image. No I/O: the graph is compiled
from the state classes alone.
"""

from __future__ import annotations

import sys
import typing

import typing_extensions
from langgraph.graph import END, START, StateGraph

from agent_server.graph import state
from agent_server.graph.state import AgentState, RunOptions


def _graph():  # type: ignore[no-untyped-def]
    builder = StateGraph(AgentState, context_schema=RunOptions)
    builder.add_node("model", lambda s: {})
    builder.add_edge(START, "model")
    builder.add_edge("model", END)
    return builder.compile()


def test_state_typed_dicts_come_from_typing_extensions() -> None:
    assert state.TypedDict is typing_extensions.TypedDict
    if sys.version_info < (3, 12):
        assert state.TypedDict is not typing.TypedDict


def test_input_output_and_state_schemas_do_not_raise() -> None:
    graph = _graph()
    for schema in (graph.get_input_jsonschema(), graph.get_output_jsonschema()):
        assert "messages" in schema["properties"]
        assert "last_turn" in schema["properties"]
    summary = graph.get_output_jsonschema()["$defs"]["TurnSummary"]
    assert summary["properties"]["usage"]["$ref"].endswith("Usage")
    assert "temperature" in graph.get_context_jsonschema()["properties"]
