"""`Turns`: the REST surface's direct path through the run core — sessions, turns and
history, with ownership and the session's slot.

A REST turn with no other subscriber needs no run record, no event log and no task:
it runs the graph in the request and takes the thread's slot in the `RunStore`
(`slots.py`) for its duration, so it and the Agent Protocol's runs never interleave
on one session, at no cost to the REST contract's throughput. Surfaces parse and
shape; this module decides (it speaks no wire format: requests are `TurnRequest`s,
answers plain dicts, streams `TurnEvent`s). A turn is split in two so that the
streaming route can fail with a proper HTTP status (404, 409, 422) *before* it
commits to a `200 text/event-stream` response: `start_turn` validates, resolves
the session and takes its lock; `run_turn` / `stream_turn` run the graph and
always release the lock, also when the client disconnects.

What a client is told and what is stored agree:

- A turn is *stored* when the persist node's SQL transaction commits (SQL is the
  source of truth). From then on the client gets the answer, even if writing the
  checkpoint afterwards fails (the hot state is then behind the transcript; it
  never holds a turn the transcript lacks).
- A turn that failed before that commit is not in SQL, and its messages, which
  LangGraph may still have checkpointed, are dropped from the model's context by
  the next turn (`graph/nodes/model.py`): no ghost turns.
- An `Idempotency-Key` makes the turn id `uuid5(principal, session, key)`, so a
  retry of a stored turn gets the stored answer instead of a second run (the
  persist node's ON CONFLICT on the turn id backs this up), a retry of a failed
  one runs it again, a retry while it runs gets 409 and a reused key with another
  body 422 (the IETF `Idempotency-Key` draft's codes).
- The daily token budget is reserved before the run (prompt estimate +
  `max_tokens`) and settled with the real usage after it, failed turns included.
- A turn that pauses for approval of its tool calls (`graph/nodes/approve.py`)
  answers `awaiting_approval` with the pending calls and writes nothing to the
  transcript; the pause lives in the checkpoint and the session row's `status`
  (`interrupted`), which the next message reads with the row it reads anyway.
  `start_approval` checks the decisions against the checkpoint's interrupt
  before resuming (a bad one is a 422 and the turn stays paused); the resumed
  turn is written once, when it completes, with the decisions.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from langchain_core.messages import HumanMessage
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agent_server.config import Settings
from agent_server.errors import (
    AgentServerError,
    ApprovalPending,
    IdempotencyKeyReused,
    InvalidApproval,
    InvalidModel,
    InvalidTools,
    NotAwaitingApproval,
    RequestInProgress,
    SessionBusy,
    SessionNotFound,
    StoreUnavailable,
)
from agent_server.graph.approval import (
    InvalidDecisions,
    approval_names,
    parse_decisions,
    pending_from_interrupts,
)
from agent_server.graph.nodes.persist import STORED_TURN_KEY, StoredTurn
from agent_server.graph.state import (
    FLAGS_KEY,
    AgentDeps,
    RunFlags,
    RunOptions,
    TurnSummary,
    new_turn,
)
from agent_server.observability.logging import get_logger
from agent_server.observability.metrics import Metrics
from agent_server.persistence.db import is_sql_outage
from agent_server.persistence.instrumented import InstrumentedSaver
from agent_server.persistence.repository import SessionInfo, TurnRecord, default_title
from agent_server.runs.bounded import bounded
from agent_server.runs.budget import Reservation, TokenBudget, estimate_tokens
from agent_server.runs.session_cache import SessionCache
from agent_server.runs.slots import SlotLocks

log = get_logger(__name__)

IDEMPOTENCY_NAMESPACE = uuid.UUID("0b3c9a4e-5d1f-4e7a-9c2b-8f6d1e0a7b35")
"""Namespace of the uuid5 turn ids derived from idempotency keys (fixed forever:
changing it would make every stored key unknown)."""
MAX_ID_CHARS = 64
"""Longest session id the transcript can hold (`sessions.id` is VARCHAR(64))."""


def possible_id(value: str) -> bool:
    """Could a session have this id? One with a NUL or control character, or longer
    than the column, can never exist: it is not found (404, as an unknown document
    id is) without asking SQL, where PostgreSQL would fail on the NUL and SQLite
    would answer "not found". (In a body, `session_id` is validated: 422.)"""
    return 0 < len(value) <= MAX_ID_CHARS and value.isprintable()


def idempotent_turn_id(principal: str, session_id: str | None, key: str) -> str:
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{principal}\x1f{session_id or ''}\x1f{key}"))


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """One user message and the choices that come with it (validated by the surface)."""

    message: str
    session_id: str | None = None
    use_tools: bool = True
    tools: list[str] | None = None
    model: str | None = None
    temperature: float = 0.7
    max_tokens: int = 1000
    require_approval: list[str] | None = None
    """Tools needing a person's approval in this turn, on top of `APPROVAL_TOOLS`."""


TurnResult = dict[str, Any]
"""A finished turn: its `TurnSummary` plus `session_id` (REST's response object)."""


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """What a streamed turn yields: `metadata`, `graph` (a `(mode, chunk)` of the
    graph's stream), `message` (a replayed answer's text), `done` (the `TurnResult`)
    or `error` (`{code, message}`). Each surface translates them."""

    event: str
    data: Any


def request_fingerprint(request: TurnRequest) -> str:
    """SHA-256 of the request as parsed (defaults filled in), stored with the turn
    so that a reused key with a different body is told apart from a retry."""
    fields = asdict(request)
    if fields["require_approval"] is None:
        # Absent as before the field existed: keys stored earlier keep their fingerprint.
        del fields["require_approval"]
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PreparedTurn:
    session: SessionInfo
    turn_id: str
    message: str
    options: RunOptions
    started: float = 0.0
    flags: RunFlags = field(default_factory=RunFlags)
    """Who runs it and what the core decided (never the client's): config, not context."""
    held: tuple[str, ...] = ()
    """Locks this turn holds (the session's; an idempotency key's for a new session)."""
    reservation: Reservation | None = None
    fingerprint: str | None = None
    """The request's fingerprint when it came with an `Idempotency-Key`."""
    replay: TurnResult | None = None
    """The key already answered: this is the stored response, and nothing runs."""
    resume: dict[str, Any] | None = None
    """The person's decisions: this run resumes the session's paused turn."""

    @property
    def new_session(self) -> bool:
        """The message started a session: no SQL row and no lock yet (see `start_turn`)."""
        return self.flags.new_session


def client_error(exc: BaseException) -> AgentServerError | None:
    """What a client is told about a store failure: Redis or SQL not answering is a
    503 `store_unavailable` (with Retry-After), not a 500 with a traceback."""
    if isinstance(exc, AgentServerError):
        return exc
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return StoreUnavailable("the state store is unreachable; retry shortly")
    if isinstance(exc, Exception) and is_sql_outage(exc):
        return StoreUnavailable("the database is unreachable; retry shortly")
    return None


@contextmanager
def store_errors() -> Iterator[None]:
    """A dead Redis or database is a 503 `store_unavailable`, not a 500."""
    try:
        yield
    except AgentServerError:
        raise
    except Exception as exc:
        mapped = client_error(exc)
        if mapped is None:
            raise
        raise mapped from exc


class _Progress:
    """What one run has shown so far: the turn's summary once the persist node
    committed it (the turn is stored: `StoredTurn`), and the tokens its model calls
    used (from the model node's updates)."""

    __slots__ = ("_tokens", "interrupts", "stored")

    def __init__(self) -> None:
        self.stored = StoredTurn()
        self._tokens = 0
        self.interrupts: list[Any] = []
        """Values of the interrupts the run stopped at (from `updates`: no extra read)."""

    @property
    def pending(self) -> list[dict[str, Any]]:
        """The tool calls the run paused on for approval (none when it did not)."""
        return pending_from_interrupts(self.interrupts)

    @property
    def summary(self) -> TurnSummary | None:
        return self.stored.summary

    @property
    def tokens(self) -> int:
        summary = self.stored.summary
        return int(summary["usage"]["total_tokens"]) if summary else self._tokens

    def observe(self, mode: str, chunk: Any) -> None:
        if mode != "updates" or not isinstance(chunk, dict):
            return
        for item in chunk.get("__interrupt__", ()):
            self.interrupts.append(getattr(item, "value", item))
        model = chunk.get("model")
        if isinstance(model, dict) and isinstance(model.get("usage"), dict):
            self._tokens = int(model["usage"].get("total_tokens", 0))


def message_text_of(message: HumanMessage | None) -> str:
    content = message.content if message is not None else ""
    return content if isinstance(content, str) else json.dumps(content)


def _replayed(record: TurnRecord) -> TurnResult:
    return dict(
        {
            "session_id": record.session_id,
            "turn_id": record.turn_id,
            "response": record.assistant_message,
            "tools_used": record.tools_used,
            "model_used": record.model_used,
            "fallbacks": record.fallbacks,
            "usage": {
                "input_tokens": record.input_tokens,
                "output_tokens": record.output_tokens,
                "total_tokens": record.input_tokens + record.output_tokens,
            },
            "cost_usd": record.cost_usd,
            "latency_ms": record.latency_ms,
            "degraded": record.degraded,
        }
    )


class Turns:
    def __init__(
        self,
        *,
        graph: CompiledStateGraph,
        checkpointer: InstrumentedSaver,
        deps: AgentDeps,
        locks: SlotLocks,
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

    def forget(self, session_id: str) -> None:
        """The session was deleted elsewhere (an Agent Protocol thread delete)."""
        if self._known is not None:
            self._known.forget(session_id)

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
        if not possible_id(session_id):
            shown = (
                session_id if len(session_id) <= MAX_ID_CHARS else session_id[:MAX_ID_CHARS] + "…"
            )
            raise SessionNotFound(shown)
        with store_errors():
            session = await self._deps.transcript.get_session(session_id, principal)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    async def list_sessions(self, principal: str, *, limit: int, offset: int) -> list[SessionInfo]:
        return await self._deps.transcript.list_sessions(principal, limit=limit, offset=offset)

    async def delete_session(self, principal: str, session_id: str) -> None:
        await self.get_session(principal, session_id)
        with store_errors():
            acquired = await self._locks.try_acquire(session_id)
        if not acquired:
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
                await self._release((session_id,))

    async def history(
        self, principal: str, session_id: str, *, limit: int, offset: int
    ) -> tuple[SessionInfo, list[TurnRecord]]:
        """The turns of the fork branch the thread is on, oldest first: after an "edit
        a message" run from an earlier checkpoint, the abandoned branch's turns are
        not shown. The branch ends at the latest checkpoint's last turn; with no
        checkpoint (hot state expired or unreachable: SQL alone still answers) at
        the newest stored turn (`persistence/branches.py`)."""
        session = await self.get_session(principal, session_id)
        head, as_of = await self._branch_head(session_id)
        with store_errors():
            turns = await self._deps.transcript.branch_turns(
                session_id, head=head, as_of=as_of, limit=limit, offset=offset
            )
        return session, turns

    async def _branch_head(self, session_id: str) -> tuple[str | None, datetime | None]:
        """The thread's latest checkpoint's last turn id, and when it was written."""
        config = {"configurable": {"thread_id": session_id, "checkpoint_ns": ""}}
        try:
            saved = await self._checkpointer.aget_tuple(config)  # type: ignore[arg-type]
        except Exception as exc:
            if client_error(exc) is None:
                raise
            log.warning("history without hot state", session_id=session_id, error=str(exc))
            return None, None
        if saved is None:
            return None, None
        last_turn = (saved.checkpoint.get("channel_values") or {}).get("last_turn")
        head = last_turn.get("turn_id") if isinstance(last_turn, dict) else None
        try:
            as_of = datetime.fromisoformat(saved.checkpoint["ts"])
        except (KeyError, TypeError, ValueError):
            as_of = None
        if as_of is not None and as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=UTC)
        return (str(head) if head else None), as_of

    # --- turns ----------------------------------------------------------------

    async def start_turn(
        self, principal: str, request: TurnRequest, *, idempotency_key: str | None = None
    ) -> PreparedTurn:
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
            if session.status == "interrupted" and self._known is not None:
                # Remembered paused: an Agent Protocol resume may have ended the pause
                # since (the embedded cache does not see those), so ask SQL; only
                # paused sessions pay this.
                session = await self.get_session(principal, session.id)
                self._remember(session)
            if session.status == "interrupted":
                # The status comes with the session's row (or the embedded cache): no
                # extra round trip for the ordinary message.
                raise ApprovalPending(session.id)
        if request.require_approval and (
            unknown := self._deps.tools.unknown(request.require_approval)
        ):
            raise InvalidTools(
                f"unknown tools in require_approval: {', '.join(unknown)}",
                details={"available": self._deps.tools.names},
            )
        turn_id, fingerprint = str(uuid.uuid4()), None
        if idempotency_key is not None:
            turn_id = idempotent_turn_id(principal, request.session_id, idempotency_key)
            fingerprint = request_fingerprint(request)
        # A retry of a stored turn is answered from SQL before any lock: its session
        # may still be locked by the attempt whose answer got lost.
        if fingerprint is not None and (
            replay := await self._stored_answer(principal, turn_id, fingerprint)
        ):
            return self._replay(session, turn_id, request, replay)
        held: list[str] = []
        try:
            # A keyed request on a new session locks its key instead: two copies of
            # it in flight would otherwise both run, in two new sessions.
            lock = f"request:{turn_id}" if new_session and fingerprint else session.id
            if not new_session or fingerprint:
                with store_errors():
                    acquired = await self._locks.try_acquire(lock)
                if not acquired:
                    if new_session:
                        raise RequestInProgress(
                            "a request with this Idempotency-Key is still running; retry later"
                        )
                    raise SessionBusy(session.id)
                held.append(lock)
            # Asked again under the lock: the first attempt may have ended in between.
            if fingerprint is not None and (
                replay := await self._stored_answer(principal, turn_id, fingerprint)
            ):
                await self._release(held)
                held.clear()
                return self._replay(session, turn_id, request, replay)
            if not new_session:
                self._remember(session)
            reservation = await self._reserve(principal, request)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release(held)
            raise
        options = RunOptions(
            use_tools=request.use_tools,
            tools=tuple(request.tools) if request.tools is not None else None,
            model=request.model,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            require_approval=tuple(request.require_approval) if request.require_approval else None,
        )
        flags = RunFlags(
            principal=principal,
            new_session=new_session,
            # A session gets its title with its first turn at the latest (`record_turn`),
            # so an untitled one has no past: its first message skips the SQL lookup.
            no_past=new_session or session.title is None,
        )
        return PreparedTurn(
            session,
            turn_id,
            request.message,
            options,
            time.perf_counter(),
            flags=flags,
            held=tuple(held),
            reservation=reservation,
            fingerprint=fingerprint,
        )

    async def start_approval(self, principal: str, session_id: str, resume: Any) -> PreparedTurn:
        """Validate a person's decisions against the session's paused turn and take
        its lock; `run_turn` / `stream_turn` then resume it. Checked *before*
        resuming (once the graph resumes, the interrupt is spent): decisions that do
        not fit are a 422 and the turn stays paused."""
        # From SQL, not the embedded cache: an Agent Protocol run may have paused it.
        session = await self.get_session(principal, session_id)
        if session.status != "interrupted":
            raise NotAwaitingApproval(session.id)
        with store_errors():
            acquired = await self._locks.try_acquire(session.id)
        if not acquired:
            raise SessionBusy(session.id)
        try:
            with store_errors():
                snapshot = await self._graph.aget_state({"configurable": {"thread_id": session.id}})
            pending = pending_from_interrupts(
                item.value for task in snapshot.tasks for item in task.interrupts
            )
            if not pending:
                raise NotAwaitingApproval(session.id)
            try:
                parse_decisions(resume, pending, self._deps.tools)
            except InvalidDecisions as exc:
                raise InvalidApproval(
                    "the decisions do not fit the pending tool calls: " + str(exc),
                    details={"problems": exc.problems, "pending_tool_calls": pending},
                ) from exc
            messages = (snapshot.values or {}).get("messages") or []
            human = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
            turn_id = str((human.id if human else None) or uuid.uuid4())
            reservation = await self._reserve(principal, TurnRequest(message="."))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release((session.id,))
            raise
        return PreparedTurn(
            session,
            turn_id,
            message_text_of(human),
            RunOptions(require_approval=approval_names(pending)),
            time.perf_counter(),
            flags=RunFlags(principal=principal),
            held=(session.id,),
            reservation=reservation,
            resume=dict(resume),
        )

    async def _set_status(self, turn: PreparedTurn, status: str, *, has_row: bool) -> None:
        """Store whether the session waits for a person (`interrupted`) on its row,
        where the next message's session lookup reads it for free."""
        principal = turn.flags.principal
        with store_errors():
            if not has_row:
                await self._deps.transcript.create_session(principal, session_id=turn.session.id)
            await self._deps.transcript.update_thread(turn.session.id, principal, status=status)
        self._remember(replace(turn.session, status=status))

    async def _paused(
        self, turn: PreparedTurn, pending: list[dict[str, Any]], *, has_row: bool
    ) -> TurnResult:
        """The answer of a turn that stopped for approval: nothing is in SQL yet (the
        turn is written once, when it completes); the pause lives in the checkpoint."""
        await self._set_status(turn, "interrupted", has_row=has_row)
        log.info(
            "turn paused for approval",
            principal=turn.flags.principal,
            session_id=turn.session.id,
            run_id=turn.turn_id,
            tools=[call["name"] for call in pending],
        )
        return {
            "session_id": turn.session.id,
            "turn_id": turn.turn_id,
            "response": "",
            "tools_used": [],
            "model_used": None,
            "fallbacks": [],
            "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
            "cost_usd": 0.0,
            "latency_ms": round((time.perf_counter() - turn.started) * 1000),
            "degraded": False,
            "status": "awaiting_approval",
            "pending_tool_calls": pending,
        }

    @staticmethod
    def _replay(
        session: SessionInfo, turn_id: str, request: TurnRequest, replay: TurnResult
    ) -> PreparedTurn:
        return PreparedTurn(
            replace(session, id=replay["session_id"]),
            turn_id,
            request.message,
            RunOptions(),
            flags=RunFlags(principal=session.owner, new_session=request.session_id is None),
            replay=replay,
        )

    async def _stored_answer(
        self, principal: str, turn_id: str, fingerprint: str
    ) -> TurnResult | None:
        """The response of the turn this idempotency key already stored, if any."""
        with store_errors():
            stored = await self._deps.transcript.get_turn(turn_id, principal)
        if stored is None:
            return None
        if stored.metadata.get("request_sha256") != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a request with a different body; "
                "use a new key for a new request"
            )
        return _replayed(stored)

    async def _reserve(self, principal: str, request: TurnRequest) -> Reservation | None:
        """Set the turn's worst case aside in the daily budget, before any model call:
        the prompt we know of (system prompt and message) plus `max_tokens`."""
        if self._budget is None:
            return None
        estimate = estimate_tokens(self.settings.system_prompt, request.message)
        return await self._budget.reserve(principal, estimate + request.max_tokens)

    async def _settle(self, turn: PreparedTurn, progress: _Progress) -> None:
        if self._budget is not None and turn.reservation is not None:
            await self._budget.settle(turn.reservation, progress.tokens)

    async def _release(self, held: Sequence[str]) -> None:
        for name in held:
            await self._locks.release(name)

    @staticmethod
    def _unsaved_session(principal: str) -> SessionInfo:
        now = datetime.now(UTC)
        return SessionInfo(
            id=str(uuid.uuid4()), owner=principal, title=None, created_at=now, last_active_at=now
        )

    async def _claim_new_session(self, turn: PreparedTurn) -> None:
        """Save and lock a new session whose id is about to be revealed (streams):
        a second message to it while this turn runs then gets 409, not 404."""
        await self._deps.transcript.create_session(turn.flags.principal, session_id=turn.session.id)
        await self._locks.try_acquire(turn.session.id)  # a fresh uuid: always free
        self._remember(turn.session)

    def _config(self, turn: PreparedTurn, progress: _Progress, flags: RunFlags) -> dict[str, Any]:
        configurable: dict[str, Any] = {
            "thread_id": turn.session.id,
            STORED_TURN_KEY: progress.stored,
            FLAGS_KEY: flags,
        }
        if turn.fingerprint is not None:
            # Read by the persist node into the turn's SQL metadata (a dict, so
            # LangGraph never copies it into checkpoint or trace metadata).
            configurable["turn_metadata"] = {"request_sha256": turn.fingerprint}
        return {"configurable": configurable, "run_id": turn.turn_id}

    def _input(self, turn: PreparedTurn) -> dict[str, Any] | Command:
        """The graph input for a turn. A session whose hot state expired gets its
        context back from SQL inside the model node (`graph/history.py`)."""
        if turn.resume is not None:
            return Command(resume=turn.resume)
        return new_turn(turn.message, turn.turn_id)

    async def _run_graph(
        self,
        turn: PreparedTurn,
        progress: _Progress,
        *,
        modes: list[str],
        stream: bool,
        max_seconds: float,
        shutdown: anyio.Event | None,
    ) -> AsyncIterator[tuple[str, Any]]:
        """The graph's stream of (mode, chunk), within `max_seconds` and the shutdown
        grace; closing this generator cancels the run."""
        flags = replace(turn.flags, stream=True) if stream else turn.flags
        graph_stream = self._graph.astream(
            self._input(turn),
            self._config(turn, progress, flags),
            context=turn.options,
            stream_mode=modes,
            durability=self.settings.checkpoint_durability,
        )
        async with aclosing(graph_stream):
            items = bounded(
                graph_stream,
                max_seconds=max_seconds,
                shutdown=shutdown,
                shutdown_grace=self.settings.shutdown_grace_seconds,
            )
            async with aclosing(items):
                async for item in items:
                    yield item

    def _stored_anyway(self, turn: PreparedTurn, exc: BaseException) -> None:
        """The transcript has the turn but what came after failed (the checkpoint
        write, usually): the turn is stored, so the client gets it."""
        log.warning(
            "turn stored, but its checkpoint was not written",
            session_id=turn.session.id,
            run_id=turn.turn_id,
            error=type(exc).__name__,
        )

    async def _finish(self, turn: PreparedTurn, summary: TurnSummary) -> TurnResult:
        self._metrics.turns.labels(str(summary["degraded"]).lower()).inc()
        if turn.resume is not None:
            await self._set_status(turn, "idle", has_row=True)
            turn = replace(turn, session=replace(turn.session, status="idle"))
        if turn.session.title is None:
            # The persist node wrote the row or gave it this title: remembering it
            # keeps `no_past` exact for the next message (embedded mode).
            self._remember(replace(turn.session, title=default_title(turn.message)))
        log.info(
            "turn",
            principal=turn.flags.principal,
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
            stream=turn.flags.stream,
        )
        return {**summary, "session_id": turn.session.id, "status": "completed"}

    def _unsettled(self, turn: PreparedTurn) -> None:
        """A turn that did not finish may still have been recorded (cut off after the
        persist node): an untitled session's remembered "no past" is then in doubt,
        so the next message reads its row from SQL again."""
        if turn.session.title is None and self._known is not None:
            self._known.forget(turn.session.id)

    def _log_failure(self, turn: PreparedTurn, code: str) -> None:
        log.warning(
            "turn failed",
            principal=turn.flags.principal,
            session_id=turn.session.id,
            run_id=turn.turn_id,
            error=code,
            latency_ms=round((time.perf_counter() - turn.started) * 1000),
        )

    async def run_turn(
        self, turn: PreparedTurn, *, shutdown: anyio.Event | None = None
    ) -> TurnResult:
        """The whole answer. `shutdown` (set on SIGTERM) gives the turn
        `SHUTDOWN_GRACE_SECONDS` more, then answers 503 `shutting_down` (JSON) instead
        of the plain-text 500 uvicorn sends when it cancels the request later."""
        if turn.replay is not None:
            return turn.replay
        self._metrics.active_runs.inc()
        progress = _Progress()
        response: TurnResult | None = None
        try:
            try:
                items = self._run_graph(
                    turn,
                    progress,
                    modes=["updates"],
                    stream=False,
                    max_seconds=math.inf,
                    shutdown=shutdown,
                )
                async with aclosing(items):
                    async for mode, chunk in items:
                        progress.observe(mode, chunk)
            except Exception as exc:
                if progress.summary is None:
                    raise
                self._stored_anyway(turn, exc)
            if progress.summary is None and (pending := progress.pending):
                response = await self._paused(turn, pending, has_row=not turn.new_session)
                return response
            if progress.summary is None:
                raise AgentServerError("the run ended without an answer")
            response = await self._finish(turn, progress.summary)
            return response
        except Exception as exc:
            mapped = client_error(exc)
            if mapped is None:
                raise
            self._log_failure(turn, mapped.code)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            if response is None:
                self._unsettled(turn)
            self._metrics.active_runs.dec()
            with anyio.CancelScope(shield=True):
                await self._settle(turn, progress)
                await self._release(turn.held)

    async def _replay_events(self, turn: PreparedTurn) -> AsyncIterator[TurnEvent]:
        assert turn.replay is not None
        replay = turn.replay
        yield TurnEvent(
            "metadata",
            {"session_id": replay["session_id"], "turn_id": replay["turn_id"], "replayed": True},
        )
        if replay["response"]:
            yield TurnEvent("message", {"content": replay["response"]})
        yield TurnEvent("done", replay)

    async def stream_turn(
        self, turn: PreparedTurn, *, shutdown: anyio.Event | None = None
    ) -> AsyncIterator[TurnEvent]:
        """The turn as events. Never raises: failures become an `error` event."""
        if turn.replay is not None:
            async with aclosing(self._replay_events(turn)) as replayed:
                async for event in replayed:
                    yield event
            return
        self._metrics.open_streams.inc()
        self._metrics.active_runs.inc()
        held = list(turn.held)
        progress = _Progress()
        finished = False
        try:
            if turn.new_session:
                with store_errors():
                    await self._claim_new_session(turn)
                held.append(turn.session.id)
            yield TurnEvent(
                "metadata",
                {
                    "session_id": turn.session.id,
                    "turn_id": turn.turn_id,
                    "model": turn.options.model or self._deps.models.specs[0].id,
                },
            )
            try:
                items = self._run_graph(
                    turn,
                    progress,
                    modes=["messages", "custom", "updates"],
                    stream=True,
                    max_seconds=self.settings.max_stream_seconds,
                    shutdown=shutdown,
                )
                async with aclosing(items):
                    async for mode, chunk in items:
                        progress.observe(mode, chunk)
                        yield TurnEvent("graph", (mode, chunk))
            except Exception as exc:
                if progress.summary is None:
                    raise
                self._stored_anyway(turn, exc)
            if progress.summary is None and (pending := progress.pending):
                paused = await self._paused(turn, pending, has_row=True)
                finished = True
                yield TurnEvent("approval_required", {"pending_tool_calls": pending})
                yield TurnEvent("done", paused)
                return
            if progress.summary is None:
                raise AgentServerError("the run ended without an answer")
            response = await self._finish(turn, progress.summary)
            finished = True
            yield TurnEvent("done", response)
        except Exception as exc:
            mapped = client_error(exc)
            if mapped is None:
                log.exception("stream failed", session_id=turn.session.id, run_id=turn.turn_id)
                mapped = AgentServerError("internal error")
            self._log_failure(turn, mapped.code)
            yield TurnEvent("error", {"code": mapped.code, "message": mapped.message})
        finally:
            if not finished:
                self._unsettled(turn)
            self._metrics.open_streams.dec()
            self._metrics.active_runs.dec()
            with anyio.CancelScope(shield=True):
                await self._settle(turn, progress)
                await self._release(held)
