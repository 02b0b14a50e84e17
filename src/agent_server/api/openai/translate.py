"""Pure translation between OpenAI's chat-completions format and the run core.

Requests: OpenAI messages → the graph's input messages. Results: a finished run's
turn summary → a `chat.completion`; its events → `chat.completion.chunk`s.

A `reset` (the chain failed over after tokens went out) cannot be said in this format:
a chunk cannot take back text. The stream then ends with an OpenAI-shaped error chunk
(`code: "stream_reset"`), which the SDKs raise as an `APIError`. For a session the
turn runs on and is recorded (the client may read it in the history, or retry); a
stateless request's run is cancelled, since nobody could read its answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent_server.api.openai.schemas import ChatCompletionRequest, ChatMessage

ROLES = {"system": "system", "developer": "system", "user": "human", "assistant": "ai"}
STREAMED_NODE = "model"
AGENT_EVENTS = ("tool_start", "tool_end", "fallback", "reset")


def text_of(message: ChatMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "".join(part.text or "" for part in message.content)


def graph_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    return [{"type": ROLES[m.role], "content": text_of(m)} for m in messages]


def new_user_message(request: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    """For a session the client resends the whole conversation; only its last
    message, a user's, is new (the session holds the rest). None if it is not one."""
    last = request.messages[-1]
    return graph_messages([last]) if last.role == "user" else None


def run_input(request: ChatCompletionRequest, *, continuing: bool) -> list[dict[str, Any]] | None:
    """The messages a run starts from: the whole conversation as sent (stateless, or a
    session that starts now), or only the new user message of a session that holds
    the rest. None when a continued conversation does not end with a user message."""
    if continuing:
        return new_user_message(request)
    return graph_messages(request.messages)


def usage_of(summary: dict[str, Any]) -> dict[str, int]:
    usage = summary.get("usage") or {}
    return {
        "prompt_tokens": int(usage.get("input_tokens", 0)),
        "completion_tokens": int(usage.get("output_tokens", 0)),
        "total_tokens": int(usage.get("total_tokens", 0)),
    }


def completion(completion_id: str, created: int, summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": summary.get("model_used") or "agent",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": summary.get("response", "")},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage_of(summary),
        "system_fingerprint": None,
    }


def agent_headers(summary: dict[str, Any], session_id: str | None) -> dict[str, str]:
    headers = {
        "X-Model-Used": str(summary.get("model_used") or ""),
        "X-Fallbacks": ",".join(
            f"{f.get('model')}:{f.get('reason')}" for f in summary.get("fallbacks") or []
        ),
        "X-Degraded": "true" if summary.get("degraded") else "false",
    }
    if session_id is not None:
        headers["X-Session-ID"] = session_id
    return headers


def no_answer(*, paused: bool, session_id: str | None = None) -> dict[str, Any]:
    """The error (run-error shape) of a run that ended without an answer: paused for a
    person's approval of a tool call (409), or for no reason we know (500)."""
    if not paused:
        return {
            "message": "the run ended without an answer",
            "code": "internal_error",
            "status": 500,
        }
    where = (
        f"session {session_id} waits for it: approve through /api or the Agent Protocol"
        if session_id
        else "a stateless request keeps no pause: use a session (X-Session-ID)"
    )
    return {
        "message": f"a tool call needs a person's approval; {where}",
        "code": "approval_required",
        "status": 409,
    }


def error_chunk(message: str, code: str, status: int = 500) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@dataclass
class ChunkStream:
    """Turns run events into chunks, one event at a time (state: whether the role was
    sent, the turn summary once the persist node wrote it)."""

    completion_id: str
    model: str
    include_usage: bool = False
    agent_events: bool = False
    session_id: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    summary: dict[str, Any] | None = None
    started: bool = False
    """A text chunk went out (the answer can no longer be taken back)."""
    ended: bool = False
    error: dict[str, Any] | None = None
    """The run's error, when it failed (the route answers it as an HTTP error if
    nothing was sent yet)."""
    reset: bool = False
    """The stream ended with `stream_reset` (the run itself goes on)."""
    paused: bool = False
    """The graph paused (an approval interrupt): the run ends without an answer."""

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }

    def _text(self, text: str) -> dict[str, Any]:
        delta: dict[str, Any] = {"content": text}
        if not self.started:
            delta = {"role": "assistant", **delta}  # OpenAI's order
            self.started = True
        return self._chunk(delta)

    def feed(self, event: str, data: Any) -> list[dict[str, Any]]:
        """Chunks for one run event (`messages`, `custom`, `updates`, `error`, `end`)."""
        if self.ended:
            return []
        if event == "messages":
            message, meta = data
            text = message.get("content") if isinstance(message, dict) else None
            if isinstance(text, list):
                text = "".join(b.get("text", "") for b in text if isinstance(b, dict))
            if (
                meta.get("langgraph_node") == STREAMED_NODE
                and isinstance(message, dict)
                and message.get("type") == "AIMessageChunk"
                and text
            ):
                return [self._text(text)]
            return []
        if event == "custom" and isinstance(data, dict):
            kind = data.get("event")
            if kind == "reset" and self.started:
                self.ended = self.reset = True
                return [
                    error_chunk(
                        "the model failed mid-answer and another one took over; the partial "
                        "answer cannot be taken back in this format: retry the request",
                        "stream_reset",
                    )
                ]
            if self.agent_events and kind in AGENT_EVENTS:
                return [self._chunk({}, agent_event=data)]
            return []
        if event == "updates" and isinstance(data, dict):
            persisted = data.get("persist")
            if isinstance(persisted, dict) and persisted.get("last_turn"):
                self.summary = persisted["last_turn"]
            if data.get("__interrupt__"):
                self.paused = True
            return []
        if event == "error":
            self.ended = True
            error = data if isinstance(data, dict) else {}
            self.error = error
            return [
                error_chunk(
                    str(error.get("message") or "the run failed"),
                    str(error.get("code") or "internal_error"),
                    int(error.get("status") or 500),
                )
            ]
        if event == "end":
            self.ended = True
            if self.summary is None or self.paused:
                self.error = no_answer(paused=self.paused, session_id=self.session_id)
                return [
                    error_chunk(self.error["message"], self.error["code"], self.error["status"])
                ]
            self.model = str(self.summary.get("model_used") or self.model)
            chunks = []
            if not self.started:  # an answer that streamed no token (a tool-only turn)
                chunks.append(self._text(str(self.summary.get("response", ""))))
            chunks.append(self._chunk({}, "stop"))
            if self.include_usage:
                usage = self._chunk({}, usage=usage_of(self.summary))
                usage["choices"] = []
                chunks.append(usage)
            return chunks
        return []
