"""REST's SSE events: the run core's turn events → what `/api/chat/message/stream` sends.

One pure function per surface (DESIGN.md): `to_sse` turns each `TurnEvent` of
`Turns.stream_turn` into the event a REST client reads (`metadata`, `message`,
`tool_start`, `tool_end`, `fallback`, `reset`, `done`, `error`), dropping what REST
does not show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessageChunk

from agent_server.api.rest.schemas import ChatResponse
from agent_server.graph.nodes.persist import message_text
from agent_server.graph.state import TurnSummary
from agent_server.runs.turns import TurnEvent

STREAMED_NODE = "model"
"""Only tokens produced by the model node are forwarded as `message` events."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: dict[str, Any]

    def encode(self) -> dict[str, str]:
        """The dict shape sse-starlette sends."""
        return {"event": self.event, "data": json.dumps(self.data, default=str)}


def to_sse(event: TurnEvent) -> SseEvent | None:
    if event.event == "graph":
        mode, chunk = event.data
        return translate(mode, chunk)[0]
    if event.event == "done":  # the same object as the non-streaming response
        return SseEvent("done", ChatResponse.model_validate(event.data).model_dump(mode="json"))
    return SseEvent(event.event, event.data)


def translate(mode: str, chunk: Any) -> tuple[SseEvent | None, TurnSummary | None]:
    """One item of `graph.astream(stream_mode=["messages", "custom", "updates"])`
    → an SSE event to send, and/or the turn summary when the persist node ran."""
    if mode == "messages":
        message, meta = chunk
        from_model = meta.get("langgraph_node") == STREAMED_NODE
        if from_model and isinstance(message, AIMessageChunk) and (text := message_text(message)):
            return SseEvent("message", {"content": text}), None
    elif mode == "custom" and isinstance(chunk, dict) and "event" in chunk:
        data = {k: v for k, v in chunk.items() if k != "event"}
        return SseEvent(str(chunk["event"]), data), None
    elif mode == "updates" and isinstance(chunk, dict):
        persisted = chunk.get("persist")
        if isinstance(persisted, dict) and persisted.get("last_turn"):
            return None, persisted["last_turn"]
    return None, None
