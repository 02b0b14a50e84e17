"""The built-in assistants: one per graph the server serves, made at start-up.

There is no assistant store (yet): an assistant here is a graph under a stable
id. The id is langgraph-api's, `uuid5(NAMESPACE, graph_id)`, so Studio URLs and
client code that name `fe096781-…` for `agent` work against `langgraph dev` and
us alike; `metadata.created_by = "system"` is what Studio searches for. Every
route that takes an assistant id also takes the graph id (the reference 422s it
except in run bodies and `/graph`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from pydantic import TypeAdapter

from agent_server.errors import AssistantNotFound
from agent_server.graph.state import PUBLIC_CONTEXT

NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
"""The reference's namespace for built-in assistant ids (`langgraph_api/graph.py`)."""


def assistant_id_for(graph_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, graph_id))


@dataclass(frozen=True, slots=True)
class Assistant:
    assistant_id: str
    graph_id: str
    graph: CompiledStateGraph = field(repr=False)
    created_at: datetime

    def wire(self) -> dict[str, Any]:
        return {
            "assistant_id": self.assistant_id,
            "graph_id": self.graph_id,
            "config": {},
            "context": {},
            "metadata": {"created_by": "system"},
            "version": 1,
            "name": self.graph_id,
            "description": None,
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }

    def schemas(self) -> dict[str, Any]:
        """Studio's input form, output view, state editor and assistant settings."""
        graph = self.graph
        context = graph.get_context_jsonschema() or {"type": "object", "properties": {}}
        properties = context.get("properties") or {}
        context = {
            **context,
            "properties": {k: v for k, v in properties.items() if k in PUBLIC_CONTEXT},
        }
        return {
            "graph_id": self.graph_id,
            "input_schema": graph.get_input_jsonschema(),
            "output_schema": graph.get_output_jsonschema(),
            "state_schema": TypeAdapter(graph.builder.state_schema).json_schema(),
            # No configurable knobs: per-run choices are the context.
            "config_schema": {"title": "Configurable", "type": "object", "properties": {}},
            "context_schema": context,
        }

    def drawable(self, xray: bool | int) -> dict[str, Any]:
        """`{nodes: [{id, type, data}], edges: [{source, target, conditional?}]}`."""
        drawn = self.graph.get_graph(xray=xray).to_json()
        for node in drawn.get("nodes", []):
            data = node.get("data")
            if isinstance(data, dict):
                data.pop("id", None)  # a Python import path: nothing for a client
        return drawn


class Assistants:
    """The built-in assistants, by assistant id and by graph id."""

    def __init__(
        self, graphs: Mapping[str, CompiledStateGraph], *, created_at: datetime | None = None
    ) -> None:
        created_at = created_at or datetime.now(UTC)
        self._all = [
            Assistant(assistant_id_for(graph_id), graph_id, graph, created_at)
            for graph_id, graph in graphs.items()
        ]
        self._schemas: dict[str, dict[str, Any]] = {}

    def all(self) -> list[Assistant]:
        return list(self._all)

    def schemas(self, assistant: Assistant) -> dict[str, Any]:
        """`assistant.schemas()`, computed once: pydantic builds them in ~0.2 s, and
        Studio asks on every page load. The graphs never change while we run."""
        cached = self._schemas.get(assistant.assistant_id)
        if cached is None:
            cached = self._schemas[assistant.assistant_id] = assistant.schemas()
        return cached

    def get(self, id_or_graph: str) -> Assistant:
        for assistant in self._all:
            if id_or_graph in (assistant.assistant_id, assistant.graph_id):
                return assistant
        raise AssistantNotFound(id_or_graph)

    def search(
        self,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[Assistant]:
        found = []
        for assistant in self._all:
            wire = assistant.wire()
            if graph_id is not None and assistant.graph_id != graph_id:
                continue
            if name is not None and name.lower() not in wire["name"].lower():
                continue
            if metadata and any(wire["metadata"].get(k) != v for k, v in metadata.items()):
                continue
            found.append(assistant)
        return found
