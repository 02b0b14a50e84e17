"""From LangGraph's stream to SSE events, within time bounds.

`bounded` is the hand-written part: `asyncio.timeout` around an async
generator's `yield` would cancel whoever consumes it (sse-starlette's send
loop), so each step of the graph's stream runs as its own task that we wait
on, with the stream's overall limit and the server's shutdown grace as
deadlines. sse-starlette signals shutdown through an `anyio.Event`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from langchain_core.messages import AIMessageChunk

from agent_server.errors import ShuttingDown, StreamTooLong
from agent_server.graph.nodes.persist import message_text
from agent_server.graph.state import TurnSummary

T = TypeVar("T")
STREAMED_NODE = "model"
"""Only tokens produced by the model node are forwarded as `message` events."""
SHUTDOWN_POLL_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: dict[str, Any]

    def encode(self) -> dict[str, str]:
        """The dict shape sse-starlette sends."""
        return {"event": self.event, "data": json.dumps(self.data, default=str)}


async def bounded(
    stream: AsyncIterator[T],
    *,
    max_seconds: float,
    shutdown: anyio.Event | None = None,
    shutdown_grace: float = 0.0,
) -> AsyncIterator[T]:
    """Yield from `stream` until it ends, `max_seconds` pass (StreamTooLong), or
    `shutdown_grace` seconds after `shutdown` is set (ShuttingDown)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    shutdown_deadline: float | None = None
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(stream))
            now = loop.time()
            if shutdown is not None and shutdown.is_set() and shutdown_deadline is None:
                shutdown_deadline = now + shutdown_grace
            limit = min(deadline, shutdown_deadline or deadline)
            if limit - now <= 0:
                if shutdown_deadline is not None and shutdown_deadline <= deadline:
                    raise ShuttingDown()
                raise StreamTooLong(max_seconds)
            wait = limit - now
            if shutdown is not None and shutdown_deadline is None:
                wait = min(wait, SHUTDOWN_POLL_SECONDS)
            done, _ = await asyncio.wait({pending}, timeout=wait)
            if not done:
                continue
            step, pending = pending, None
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending


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
