"""Run events → Server-Sent Events frames of the LangGraph Platform API.

One pure function, `frames`, decides every event name the clients see
(`AGENT-PROTOCOL.md` §4.2), from the core's run event and the stream modes the
client asked for:

- `metadata` first, `error` on failure and `end` last go out whatever was asked;
- LangGraph's `messages` mode (message chunks with their metadata) goes out as
  `messages` when `messages-tuple` was asked (the name both SDKs and useStream
  read), and/or as the legacy `messages/metadata` (a message's first sight),
  `messages/partial` (a chunk: the message accumulated so far) and
  `messages/complete` (a whole message) when `messages` was asked;
- `debug` checkpoint payloads gain `checkpoint` / `parent_checkpoint` (Studio's
  timeline reads them);
- every other mode passes through under its own name, `mode|ns` inside subgraphs;
  a mode nobody asked for never leaks.

The legacy accumulation needs what the run streamed before; it is passed in and
returned (`Seen`), never kept in a module, so one reader's stream cannot see
another's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.messages import (
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    ChatMessageChunk,
    FunctionMessageChunk,
    HumanMessageChunk,
    SystemMessageChunk,
    ToolMessageChunk,
    convert_to_messages,
    message_chunk_to_message,
)

from agent_server.api.agent_protocol.wire import checkpoint_of, encode
from agent_server.runs.events import RunEvent

ALWAYS = frozenset({"metadata", "error", "end"})
STREAM_MODES = frozenset(
    {
        "values",
        "updates",
        "messages",
        "messages-tuple",
        "custom",
        "events",
        "debug",
        "tasks",
        "checkpoints",
    }
)
"""The `stream_mode` values the run routes accept (`tools`/`lifecycle` are 422)."""
SYNTHETIC_ID = "0-0"
"""The id the core gives events it makes up after a log expired: no replay cursor."""
HEARTBEAT = b": heartbeat\r\n\r\n"
CHUNKS: dict[str, type[BaseMessageChunk]] = {
    cls.__name__: cls
    for cls in (
        AIMessageChunk,
        ToolMessageChunk,
        HumanMessageChunk,
        SystemMessageChunk,
        ChatMessageChunk,
        FunctionMessageChunk,
    )
}

Seen = Mapping[str, BaseMessage]
"""Messages already streamed in legacy `messages` mode, by id (chunks accumulated)."""


def graph_modes(wire_modes: frozenset[str] | set[str]) -> tuple[str, ...]:
    """The LangGraph stream modes that feed the wire modes asked for."""
    modes = {"messages" if mode == "messages-tuple" else mode for mode in wire_modes}
    return tuple(sorted(modes))


def frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    """`event: …\\r\\ndata: <one-line JSON>\\r\\n[id: …\\r\\n]\\r\\n` (langgraph-api's framing)."""
    parts = [b"event: ", _field(event), b"\r\ndata: ", encode(data), b"\r\n"]
    if event_id is not None and event_id != SYNTHETIC_ID:
        parts += [b"id: ", _field(event_id), b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts)


def _field(value: str) -> bytes:
    return value.replace("\r", "").replace("\n", "").encode()


def frames(
    event: RunEvent, modes: frozenset[str], seen: Seen, *, ids: bool = True
) -> tuple[list[bytes], Seen]:
    """The frames one run event becomes for a reader that asked for `modes` (wire
    names), and the legacy-messages state to pass with the next event."""
    event_id = event.id if ids else None
    mode, sep, ns = event.event.partition("|")
    if mode in ALWAYS and not sep:
        return [frame(event.event, event.data, event_id)], seen
    if mode == "messages":
        out: list[bytes] = []
        if "messages-tuple" in modes:
            out.append(frame(event.event, event.data, event_id))
        if "messages" in modes:
            legacy, seen = _legacy_messages(event.data, seen)
            suffix = sep + ns
            out += [frame(name + suffix, data, event_id) for name, data in legacy]
        return out, seen
    if mode not in modes:
        return [], seen
    data = event.data
    if mode == "debug" and isinstance(data, dict) and data.get("type") == "checkpoint":
        data = {**data, "payload": _debug_checkpoint(data.get("payload"))}
    return [frame(event.event, data, event_id)], seen


def _debug_checkpoint(payload: Any) -> Any:
    if not isinstance(payload, dict):
        return payload
    return {
        **payload,
        "checkpoint": checkpoint_of(payload.get("config")),
        "parent_checkpoint": checkpoint_of(payload.get("parent_config")),
    }


def _legacy_messages(data: Any, seen: Seen) -> tuple[list[tuple[str, Any]], Seen]:
    """langgraph-api's `messages` mode (`stream.py`): chunks of one message id are
    added up and sent whole each time (`partial`), whole messages as `complete`,
    and the first sight of an id also gets `metadata`."""
    if not isinstance(data, list | tuple) or len(data) != 2 or not isinstance(data[0], dict):
        return [], seen
    raw, metadata = data
    chunk_type = CHUNKS.get(str(raw.get("type", "")))
    message: BaseMessage
    if chunk_type is not None:
        message = chunk_type.model_validate(raw)
    else:
        message = convert_to_messages([raw])[0]
    key = message.id or ""
    out: list[tuple[str, Any]] = []
    previous = seen.get(key)
    if isinstance(previous, BaseMessageChunk) and isinstance(message, BaseMessageChunk):
        message = previous + message
    elif previous is None:
        out.append(("messages/metadata", {key: {"metadata": metadata}}))
    seen = {**seen, key: message}
    if isinstance(message, BaseMessageChunk):
        out.append(("messages/partial", [message]))
    else:
        out.append(("messages/complete", [message_chunk_to_message(message)]))
    return out, seen
