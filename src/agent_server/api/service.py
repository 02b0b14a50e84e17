"""What the routes call: sessions, turns and history, with ownership and locking.

Routes parse and shape; this module decides. A turn is split in two so that the
streaming route can fail with a proper HTTP status (404, 409, 422) *before* it
commits to a `200 text/event-stream` response: `start_turn` validates, resolves
the session and takes its lock; `run_turn` / `stream_turn` run the graph and
always release the lock, also when the client disconnects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import anyio
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agent_server.api.limits import TokenBudget
from agent_server.api.locks import SessionLocks
from agent_server.api.schemas import ChatRequest, ChatResponse
from agent_server.config import Settings
from agent_server.errors import (
    AgentServerError,
    InvalidModel,
    InvalidTools,
    SessionBusy,
    SessionNotFound,
    StoreUnavailable,
)
from agent_server.graph.nodes.persist import message_text
from agent_server.graph.state import AgentDeps, RunOptions, TurnSummary, new_turn
from agent_server.persistence.repository import SessionInfo, TurnRecord

log = logging.getLogger(__name__)

STREAMED_NODE = "model"
"""Only tokens produced by the model node are forwarded as `message` events."""


@dataclass(frozen=True, slots=True)
class PreparedTurn:
    session: SessionInfo
    turn_id: str
    message: str
    options: RunOptions
    new_session: bool = False


class StreamTooLong(AgentServerError):
    status_code = 504
    code = "stream_timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the stream exceeded its {seconds:g} s limit")


@contextmanager
def store_errors() -> Iterator[None]:
    """A dead Redis is a 503 `store_unavailable`, not a 500."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise StoreUnavailable("the state store is unreachable; retry shortly") from exc


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: dict[str, Any]

    def encode(self) -> dict[str, str]:
        """The dict shape sse-starlette sends."""
        return {"event": self.event, "data": json.dumps(self.data, default=str)}


class ChatService:
    def __init__(
        self,
        *,
        graph: CompiledStateGraph,
        checkpointer: BaseCheckpointSaver,
        deps: AgentDeps,
        locks: SessionLocks,
        budget: TokenBudget | None = None,
    ) -> None:
        self._graph = graph
        self._checkpointer = checkpointer
        self._deps = deps
        self._locks = locks
        self._budget = budget

    @property
    def settings(self) -> Settings:
        return self._deps.settings

    def expires_at(self, session: SessionInfo) -> datetime:
        return session.last_active_at + timedelta(seconds=self.settings.session_ttl_seconds)

    # --- sessions -------------------------------------------------------------

    async def create_session(self, principal: str, title: str | None = None) -> SessionInfo:
        return await self._deps.transcript.create_session(principal, title=title)

    async def get_session(self, principal: str, session_id: str) -> SessionInfo:
        session = await self._deps.transcript.get_session(session_id, principal)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    async def list_sessions(self, principal: str, *, limit: int, offset: int) -> list[SessionInfo]:
        return await self._deps.transcript.list_sessions(principal, limit=limit, offset=offset)

    async def delete_session(self, principal: str, session_id: str) -> None:
        await self.get_session(principal, session_id)
        if not await self._locks.try_acquire(session_id):
            raise SessionBusy(session_id)
        try:
            # Hot state first: if the store is down we fail before SQL forgets the session.
            with store_errors():
                await self._checkpointer.adelete_thread(session_id)
            await self._deps.transcript.delete_session(session_id, principal)
        finally:
            with anyio.CancelScope(shield=True):
                await self._locks.release(session_id)

    async def history(
        self, principal: str, session_id: str, *, limit: int, offset: int
    ) -> tuple[SessionInfo, list[TurnRecord]]:
        session = await self.get_session(principal, session_id)
        turns = await self._deps.transcript.list_turns(session_id, limit=limit, offset=offset)
        return session, turns

    # --- turns ----------------------------------------------------------------

    async def start_turn(self, principal: str, request: ChatRequest) -> PreparedTurn:
        if request.model is not None and not self._deps.models.has(request.model):
            raise InvalidModel(
                f"model {request.model!r} is not configured",
                details={"available": [spec.id for spec in self._deps.models.specs]},
            )
        if request.tools is not None and (unknown := self._deps.tools.unknown(request.tools)):
            raise InvalidTools(
                f"unknown tools: {', '.join(unknown)}",
                details={"available": self._deps.tools.names},
            )
        if self._budget is not None:
            await self._budget.check(principal)
        new_session = request.session_id is None
        if request.session_id is None:
            session = await self.create_session(principal)
        else:
            session = await self.get_session(principal, request.session_id)
        if not await self._locks.try_acquire(session.id):
            raise SessionBusy(session.id)
        options = RunOptions(
            principal=principal,
            use_tools=request.use_tools,
            tools=tuple(request.tools) if request.tools is not None else None,
            model=request.model,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
        )
        return PreparedTurn(session, str(uuid.uuid4()), request.message, options, new_session)

    def _config(self, turn: PreparedTurn) -> dict[str, Any]:
        return {"configurable": {"thread_id": turn.session.id}, "run_id": turn.turn_id}

    async def _input(self, turn: PreparedTurn) -> dict[str, Any]:
        """The graph input for a turn, with context rebuilt from SQL when the
        session's hot state has expired (or was lost): nothing the user said is lost."""
        graph_input = new_turn(turn.message, turn.turn_id)
        if turn.new_session:
            return graph_input
        if await self._checkpointer.aget_tuple(self._config(turn)) is not None:
            return graph_input
        window = max(1, self.settings.history_window // 2)
        turns = await self._deps.transcript.recent_turns(turn.session.id, limit=window)
        history: list[BaseMessage] = []
        for past in turns:
            history.append(HumanMessage(content=past.user_message, id=f"{past.turn_id}:user"))
            history.append(AIMessage(content=past.assistant_message, id=f"{past.turn_id}:ai"))
        if history:
            log.info("rebuilt %d messages of session %s from SQL", len(history), turn.session.id)
        graph_input["messages"] = [*history, *graph_input["messages"]]
        return graph_input

    async def _finish(self, turn: PreparedTurn, summary: TurnSummary) -> ChatResponse:
        if self._budget is not None:
            await self._budget.spend(turn.options.principal, summary["usage"]["total_tokens"])
        return ChatResponse.model_validate({**summary, "session_id": turn.session.id})

    async def run_turn(self, turn: PreparedTurn) -> ChatResponse:
        try:
            with store_errors():
                final = await self._graph.ainvoke(
                    await self._input(turn), self._config(turn), context=turn.options
                )
            return await self._finish(turn, final["last_turn"])
        finally:
            with anyio.CancelScope(shield=True):
                await self._locks.release(turn.session.id)

    async def stream_turn(self, turn: PreparedTurn) -> AsyncIterator[SseEvent]:
        """Graph stream → SSE events. Never raises: failures become an `error` event."""
        try:
            yield SseEvent(
                "metadata",
                {
                    "session_id": turn.session.id,
                    "turn_id": turn.turn_id,
                    "model": turn.options.model or self._deps.models.specs[0].id,
                },
            )
            summary: TurnSummary | None = None
            with store_errors():
                graph_input = await self._input(turn)
            stream = self._graph.astream(
                graph_input,
                self._config(turn),
                context=replace(turn.options, stream=True),
                stream_mode=["messages", "custom", "updates"],
            )
            deadline = asyncio.get_running_loop().time() + self.settings.max_stream_seconds
            async with aclosing(stream):
                while True:
                    # A bound on the whole stream; an async-generator-safe timeout
                    # (asyncio.timeout around `yield` would cancel the consumer).
                    remaining = deadline - asyncio.get_running_loop().time()
                    try:
                        mode, chunk = await asyncio.wait_for(anext(stream), max(remaining, 0))
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise StreamTooLong(self.settings.max_stream_seconds) from None
                    if mode == "messages":
                        message, meta = chunk
                        if meta.get("langgraph_node") != STREAMED_NODE:
                            continue
                        if isinstance(message, AIMessageChunk) and (text := message_text(message)):
                            yield SseEvent("message", {"content": text})
                    elif mode == "custom" and isinstance(chunk, dict) and "event" in chunk:
                        data = {k: v for k, v in chunk.items() if k != "event"}
                        yield SseEvent(str(chunk["event"]), data)
                    elif mode == "updates" and isinstance(chunk, dict):
                        persisted = chunk.get("persist")
                        if isinstance(persisted, dict) and persisted.get("last_turn"):
                            summary = persisted["last_turn"]
            if summary is None:
                raise AgentServerError("the run ended without an answer")
            response = await self._finish(turn, summary)
            yield SseEvent("done", response.model_dump(mode="json"))
        except AgentServerError as exc:
            yield SseEvent("error", {"code": exc.code, "message": exc.message})
        except (RedisConnectionError, RedisTimeoutError):
            yield SseEvent(
                "error",
                {"code": StoreUnavailable.code, "message": "the state store is unreachable"},
            )
        except Exception:
            log.exception("stream failed", extra={"session_id": turn.session.id})
            yield SseEvent("error", {"code": "internal_error", "message": "internal error"})
        finally:
            with anyio.CancelScope(shield=True):
                await self._locks.release(turn.session.id)
