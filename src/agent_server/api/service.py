"""What the routes call: sessions, turns and history, with ownership and locking.

Routes parse and shape; this module decides. A turn is split in two so that the
streaming route can fail with a proper HTTP status (404, 409, 422) *before* it
commits to a `200 text/event-stream` response: `start_turn` validates, resolves
the session and takes its lock; `run_turn` / `stream_turn` run the graph and
always release the lock, also when the client disconnects.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from langgraph.graph.state import CompiledStateGraph
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agent_server.api.limits import TokenBudget
from agent_server.api.locks import SessionLocks
from agent_server.api.schemas import ChatRequest, ChatResponse
from agent_server.api.session_cache import SessionCache
from agent_server.api.streaming import SseEvent, bounded, translate
from agent_server.config import Settings
from agent_server.errors import (
    AgentServerError,
    InvalidModel,
    InvalidTools,
    SessionBusy,
    SessionNotFound,
    StoreUnavailable,
)
from agent_server.graph.state import AgentDeps, RunOptions, TurnSummary, new_turn
from agent_server.observability.logging import get_logger
from agent_server.observability.metrics import Metrics
from agent_server.persistence.instrumented import InstrumentedSaver
from agent_server.persistence.repository import SessionInfo, TurnRecord, default_title

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PreparedTurn:
    session: SessionInfo
    turn_id: str
    message: str
    options: RunOptions
    started: float = 0.0

    @property
    def new_session(self) -> bool:
        """The message started a session: no SQL row and no lock yet (see `start_turn`)."""
        return self.options.new_session


@contextmanager
def store_errors() -> Iterator[None]:
    """A dead Redis is a 503 `store_unavailable`, not a 500."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise StoreUnavailable("the state store is unreachable; retry shortly") from exc


class ChatService:
    def __init__(
        self,
        *,
        graph: CompiledStateGraph,
        checkpointer: InstrumentedSaver,
        deps: AgentDeps,
        locks: SessionLocks,
        metrics: Metrics,
        budget: TokenBudget | None = None,
    ) -> None:
        self._graph = graph
        self._checkpointer = checkpointer
        self._deps = deps
        self._locks = locks
        self._budget = budget
        self._metrics = metrics
        # Single-process (embedded) mode only: see session_cache.py for why that is safe.
        self._known = SessionCache() if deps.settings.redis_url is None else None

    @property
    def settings(self) -> Settings:
        return self._deps.settings

    def expires_at(self, session: SessionInfo) -> datetime:
        return session.last_active_at + timedelta(seconds=self.settings.session_ttl_seconds)

    # --- sessions -------------------------------------------------------------

    async def create_session(self, principal: str, title: str | None = None) -> SessionInfo:
        session = await self._deps.transcript.create_session(principal, title=title)
        self._remember(session)
        return session

    def _remember(self, session: SessionInfo) -> None:
        if self._known is not None:
            self._known.put(session)

    async def _owned_session(self, principal: str, session_id: str) -> SessionInfo:
        """For running a turn: only the id and owner matter, so a remembered session
        will do; anything else goes to SQL (and a stranger gets the same 404)."""
        known = self._known.get(session_id) if self._known is not None else None
        if known is not None and known.owner == principal:
            return known
        return await self.get_session(principal, session_id)

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
            if self._known is not None:
                self._known.forget(session_id)
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
            # Nobody knows a new session's id until we answer, so it needs neither a
            # lock nor an up-front row: the persist node writes the row with the turn
            # (one SQL transaction and two Redis round trips fewer per turn, +15 %
            # turns/s). A stream reveals the id early, so `stream_turn` saves and
            # locks it before its first event.
            session = self._unsaved_session(principal)
        else:
            session = await self._owned_session(principal, request.session_id)
            if not await self._locks.try_acquire(session.id):
                raise SessionBusy(session.id)
            self._remember(session)
        options = RunOptions(
            principal=principal,
            use_tools=request.use_tools,
            tools=tuple(request.tools) if request.tools is not None else None,
            model=request.model,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            new_session=new_session,
            # A session gets its title with its first turn at the latest (`record_turn`),
            # so an untitled one has no past: its first message skips the SQL lookup.
            no_past=new_session or session.title is None,
        )
        return PreparedTurn(
            session, str(uuid.uuid4()), request.message, options, time.perf_counter()
        )

    @staticmethod
    def _unsaved_session(principal: str) -> SessionInfo:
        now = datetime.now(UTC)
        return SessionInfo(
            id=str(uuid.uuid4()), owner=principal, title=None, created_at=now, last_active_at=now
        )

    async def _claim_new_session(self, turn: PreparedTurn) -> None:
        """Save and lock a new session whose id is about to be revealed (streams):
        a second message to it while this turn runs then gets 409, not 404."""
        await self._deps.transcript.create_session(
            turn.options.principal, session_id=turn.session.id
        )
        await self._locks.try_acquire(turn.session.id)  # a fresh uuid: always free
        self._remember(turn.session)

    def _config(self, turn: PreparedTurn) -> dict[str, Any]:
        return {"configurable": {"thread_id": turn.session.id}, "run_id": turn.turn_id}

    def _input(self, turn: PreparedTurn) -> dict[str, Any]:
        """The graph input for a turn. A session whose hot state expired gets its
        context back from SQL inside the model node (`graph/history.py`)."""
        return new_turn(turn.message, turn.turn_id)

    async def _finish(self, turn: PreparedTurn, summary: TurnSummary) -> ChatResponse:
        if self._budget is not None:
            await self._budget.spend(turn.options.principal, summary["usage"]["total_tokens"])
        self._metrics.turns.labels(str(summary["degraded"]).lower()).inc()
        if turn.session.title is None:
            # The persist node wrote the row or gave it this title: remembering it
            # keeps `no_past` exact for the next message (embedded mode).
            self._remember(replace(turn.session, title=default_title(turn.message)))
        log.info(
            "turn",
            principal=turn.options.principal,
            session_id=turn.session.id,
            run_id=turn.turn_id,
            model_used=summary["model_used"],
            fallbacks=summary["fallbacks"],
            tools_used=summary["tools_used"],
            input_tokens=summary["usage"]["input_tokens"],
            output_tokens=summary["usage"]["output_tokens"],
            cost_usd=summary["cost_usd"],
            latency_ms=summary["latency_ms"],
            degraded=summary["degraded"],
            stream=turn.options.stream,
        )
        return ChatResponse.model_validate({**summary, "session_id": turn.session.id})

    def _unsettled(self, turn: PreparedTurn) -> None:
        """A turn that did not finish may still have been recorded (cut off after the
        persist node): an untitled session's remembered "no past" is then in doubt,
        so the next message reads its row from SQL again."""
        if turn.session.title is None and self._known is not None:
            self._known.forget(turn.session.id)

    def _log_failure(self, turn: PreparedTurn, code: str) -> None:
        log.warning(
            "turn failed",
            principal=turn.options.principal,
            session_id=turn.session.id,
            run_id=turn.turn_id,
            error=code,
            latency_ms=round((time.perf_counter() - turn.started) * 1000),
        )

    async def run_turn(self, turn: PreparedTurn) -> ChatResponse:
        self._metrics.active_runs.inc()
        finished = False
        try:
            with store_errors():
                final = await self._graph.ainvoke(
                    self._input(turn),
                    self._config(turn),
                    context=turn.options,
                    durability=self.settings.checkpoint_durability,
                )
            response = await self._finish(turn, final["last_turn"])
            finished = True
            return response
        except AgentServerError as exc:
            self._log_failure(turn, exc.code)
            raise
        finally:
            if not finished:
                self._unsettled(turn)
            self._metrics.active_runs.dec()
            if not turn.new_session:
                with anyio.CancelScope(shield=True):
                    await self._locks.release(turn.session.id)

    async def stream_turn(
        self, turn: PreparedTurn, *, shutdown: anyio.Event | None = None
    ) -> AsyncIterator[SseEvent]:
        """Graph stream → SSE events. Never raises: failures become an `error` event."""
        self._metrics.open_streams.inc()
        self._metrics.active_runs.inc()
        finished = False
        try:
            if turn.new_session:
                with store_errors():
                    await self._claim_new_session(turn)
            yield SseEvent(
                "metadata",
                {
                    "session_id": turn.session.id,
                    "turn_id": turn.turn_id,
                    "model": turn.options.model or self._deps.models.specs[0].id,
                },
            )
            summary: TurnSummary | None = None
            stream = self._graph.astream(
                self._input(turn),
                self._config(turn),
                context=replace(turn.options, stream=True),
                stream_mode=["messages", "custom", "updates"],
                durability=self.settings.checkpoint_durability,
            )
            async with aclosing(stream):
                items = bounded(
                    stream,
                    max_seconds=self.settings.max_stream_seconds,
                    shutdown=shutdown,
                    shutdown_grace=self.settings.shutdown_grace_seconds,
                )
                async with aclosing(items):
                    async for mode, chunk in items:
                        event, done = translate(mode, chunk)
                        if event is not None:
                            yield event
                        summary = done or summary
            if summary is None:
                raise AgentServerError("the run ended without an answer")
            response = await self._finish(turn, summary)
            finished = True
            yield SseEvent("done", response.model_dump(mode="json"))
        except AgentServerError as exc:
            self._log_failure(turn, exc.code)
            yield SseEvent("error", {"code": exc.code, "message": exc.message})
        except (RedisConnectionError, RedisTimeoutError):
            self._log_failure(turn, StoreUnavailable.code)
            yield SseEvent(
                "error",
                {"code": StoreUnavailable.code, "message": "the state store is unreachable"},
            )
        except Exception:
            log.exception("stream failed", session_id=turn.session.id, run_id=turn.turn_id)
            yield SseEvent("error", {"code": "internal_error", "message": "internal error"})
        finally:
            if not finished:
                self._unsettled(turn)
            self._metrics.open_streams.dec()
            self._metrics.active_runs.dec()
            with anyio.CancelScope(shield=True):
                await self._locks.release(turn.session.id)
