"""`Runs`: create a run on a thread (or none), execute it as a task, stream, wait, cancel.

A run starts the moment it is admitted (no queue polling): `create` admits it through
the `RunStore` and, if it holds the thread's slot, launches a task that streams the
graph into the run's event log. Runs that must wait (`enqueue`) are started by whoever
frees the slot, on whichever replica that is: the run record carries the whole request.
Readers (`stream`, `wait`) only ever read the event log, so a client may follow a run
executing on another replica, and rejoin after a dropped connection.

Cancels go to the task if this replica executes the run, else over the executing
replica's own Redis channel (`<p>:cancel:<replica>`), which each `Runs` listens on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any, Literal

import anyio
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from redis.asyncio import Redis, RedisCluster

from agent_server.config import Settings
from agent_server.errors import (
    AgentServerError,
    BadRunRequest,
    InvalidApproval,
    RunNotFound,
    ThreadBusy,
    ThreadNotFound,
)
from agent_server.graph.approval import (
    InvalidDecisions,
    approval_names,
    parse_decisions,
    pending_from_interrupts,
)
from agent_server.graph.state import FLAGS_KEY, PUBLIC_CONTEXT, RunFlags, RunOptions
from agent_server.observability.metrics import Metrics
from agent_server.persistence.deferred_writes import deferred_writes
from agent_server.persistence.redis_time import unbudgeted_context
from agent_server.persistence.repository import SessionInfo, TranscriptRepository
from agent_server.runs.budget import Reservation, TokenBudget, estimate_tokens
from agent_server.runs.events import END, EventLog, RunEvent
from agent_server.runs.serialize import jsonable
from agent_server.runs.store import MultitaskStrategy, RunRecord, RunStore, SlotKeeper
from agent_server.tools.registry import ToolRegistry

log = logging.getLogger(__name__)

GRAPH_MODES = frozenset(
    {"values", "updates", "messages", "custom", "debug", "tasks", "checkpoints", "events"}
)
"""Stream modes a run can ask for (LangGraph's, plus `events` = `astream_events`)."""
PROTECTED_CONFIGURABLE = frozenset(
    {"thread_id", "run_id", "graph_id", "assistant_id", "user_id", "principal", "checkpoint_ns"}
)
Action = Literal["interrupt", "rollback"]


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What a surface asks a run to do, in the core's terms (no wire format)."""

    assistant_id: str
    input: Any = None
    command: dict[str, Any] | None = None
    stream_modes: tuple[str, ...] = ("values",)
    subgraphs: bool = False
    configurable: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    recursion_limit: int | None = None
    context: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None
    interrupt_before: tuple[str, ...] | Literal["*"] | None = None
    interrupt_after: tuple[str, ...] | Literal["*"] | None = None
    multitask_strategy: MultitaskStrategy = "enqueue"
    if_not_exists: Literal["reject", "create"] = "reject"
    on_completion: Literal["delete", "keep"] = "delete"
    durability: Literal["sync", "async", "exit"] | None = None

    def to_kwargs(self) -> dict[str, Any]:
        """The request as plain data for the run record: field by field, because
        `dataclasses.asdict` deep-copies `input` and `context` only for `jsonable`
        to walk them again (~0.2 ms a run)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> RunRequest:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in kwargs.items() if k in known}
        for name in ("stream_modes", "tags"):
            if name in values:
                values[name] = tuple(values[name])
        for name in ("interrupt_before", "interrupt_after"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)


def _modes(request: RunRequest) -> set[str]:
    """What the graph must stream: what was asked, plus `values` (the run's result) and
    `updates` (where interrupts show)."""
    unknown = set(request.stream_modes) - GRAPH_MODES
    if unknown:
        raise BadRunRequest(f"unknown stream mode(s): {', '.join(sorted(unknown))}")
    return {*request.stream_modes, "values", "updates"} - {"events"}


def _context(request: RunRequest) -> RunOptions:
    """The graph's public context from what the client sent: known keys only (Studio
    sends its assistant's whole context), never who the caller is."""
    public = {k: v for k, v in request.context.items() if k in PUBLIC_CONTEXT}
    for name in ("tools", "require_approval"):
        if isinstance(public.get(name), list):
            public[name] = tuple(public[name])
    try:
        return RunOptions(**public)
    except TypeError as exc:
        raise BadRunRequest(f"invalid context: {exc}") from exc


def _input_messages(request: RunRequest) -> list[Any]:
    messages = request.input.get("messages") if isinstance(request.input, dict) else None
    return messages if isinstance(messages, list) else []


@dataclass(slots=True)
class _Seen:
    """What a run's stream showed that its end needs: tokens its model calls used (for
    the budget), and whether the graph paused (an interrupt or a breakpoint)."""

    tokens: int = 0
    paused: bool = False

    def observe(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            return
        if "__interrupt__" in chunk:
            self.paused = True
        model = chunk.get("model")
        if isinstance(model, dict) and isinstance(model.get("usage"), dict):
            self.tokens = int(model["usage"].get("total_tokens", 0))


@dataclass(slots=True)
class _Execution:
    task: asyncio.Task[None]
    thread_id: str
    owner: str
    action: Action | None = None
    """Set when we cancel the task: what the cancel asked for."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the run is settled (record, `end`, slot), as its `end` event would say."""
    status: str | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None

    def settle(self, status: str, error: dict[str, Any] | None, result: Any) -> None:
        self.status, self.error, self.result = status, error, result
        self.ended.set()


class Runs:
    """Every run of this replica, and the way to every run of the others."""

    def __init__(
        self,
        *,
        graph: CompiledStateGraph,
        checkpointer: BaseCheckpointSaver,
        transcript: TranscriptRepository,
        store: RunStore,
        events: EventLog,
        settings: Settings,
        metrics: Metrics,
        replica_id: str | None = None,
        redis: Redis | RedisCluster | None = None,
        graph_id: str = "agent",
        budget: TokenBudget | None = None,
        on_status: Callable[[str], None] | None = None,
        tools: ToolRegistry | None = None,
    ) -> None:
        self._graph = graph
        self._checkpointer = checkpointer
        self._transcript = transcript
        self._store = store
        self._events = events
        self._settings = settings
        self._metrics = metrics
        self._replica = replica_id or uuid.uuid4().hex
        self._redis = redis
        self._graph_id = graph_id
        self._budget = budget
        self._on_status = on_status
        self._tools = tools
        """Told each thread whose stored status a run changed (the REST path's
        in-process session cache, which would otherwise miss a pause)."""
        self._running: dict[str, _Execution] = {}
        self._slots = SlotKeeper(
            store, interval_seconds=settings.lock_ttl_seconds / 3 if redis is not None else None
        )
        self._listener: asyncio.Task[None] | None = None

    @property
    def store(self) -> RunStore:
        return self._store

    @property
    def transcript(self) -> TranscriptRepository:
        return self._transcript

    @property
    def replica_id(self) -> str:
        return self._replica

    # --- lifecycle ---------------------------------------------------------------

    def _channel(self, replica: str) -> str:
        return f"{self._settings.redis_key_prefix}:cancel:{replica}"

    async def start(self) -> None:
        """Listen for cancels of runs this replica executes (Redis only)."""
        if isinstance(self._redis, Redis):
            self._listener = asyncio.create_task(self._listen(), name="runs-cancel-listener")

    async def _listen(self) -> None:
        assert isinstance(self._redis, Redis)
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel(self._replica))
                    async for message in pubsub.listen():
                        data = json.loads(message["data"])
                        self._cancel_local(data["run_id"], data.get("action", "interrupt"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: listen again once it is back
                log.warning("cancel listener: %s", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        executions = list(self._running.values())
        for execution in executions:
            execution.action = execution.action or "interrupt"
            execution.task.cancel()
        await asyncio.gather(*(e.task for e in executions), return_exceptions=True)

    # --- create ------------------------------------------------------------------

    async def create(self, principal: str, thread_id: str | None, request: RunRequest) -> RunRecord:
        """Admit a run on `thread_id` (None: a temporary thread, deleted after the run
        unless `on_completion="keep"`) and start it if the thread is free."""
        _modes(request)
        resume = (request.command or {}).get("resume")
        if thread_id is None and resume is not None:
            raise BadRunRequest("a resume command needs a thread")
        reserved = await self._reserve(principal, request)
        try:
            return await self._admit(principal, thread_id, request, reserved)
        except BaseException:
            await self._settle(principal, reserved, 0)
            raise

    async def _reserve(self, principal: str, request: RunRequest) -> int:
        """Set the run's worst case aside in the daily budget before any model call:
        the prompt we know of (system prompt and input) plus `max_tokens`; 429
        `budget_exceeded` if it does not fit. Every surface's runs pay it, as REST's do."""
        if self._budget is None:
            return 0
        limit = request.context.get("max_tokens")
        tokens = estimate_tokens(
            self._settings.system_prompt, json.dumps(jsonable(request.input or {}))
        ) + (limit if isinstance(limit, int) and limit > 0 else RunOptions.max_tokens)
        reservation = await self._budget.reserve(principal, tokens)
        return reservation.tokens if reservation is not None else 0

    async def _settle(self, principal: str, reserved: int, used: int) -> None:
        if self._budget is not None and reserved:
            await self._budget.settle(Reservation(principal, reserved), used)

    async def _admit(
        self, principal: str, thread_id: str | None, request: RunRequest, reserved: int
    ) -> RunRecord:
        stamp = {"graph_id": self._graph_id, "assistant_id": request.assistant_id}
        prior: str | None = None
        fresh = False
        if thread_id is None:
            thread_id = str(uuid.uuid4())
            await self._transcript.create_thread(principal, thread_id, stamp)
            request = replace(request, multitask_strategy="reject")
            temporary = True
        else:
            row = await self._ensure_thread(principal, thread_id, request, stamp)
            prior = row.status
            # A session gets its title with its first stored turn (as on REST).
            fresh = row.title is None
            if any(row.metadata.get(k) != v for k, v in stamp.items()):
                # Agent Chat UI lists threads by these (`threads.search` on metadata).
                await self._transcript.update_thread(thread_id, principal, metadata=stamp)
            temporary = False
        if (request.command or {}).get("resume") is not None:
            request = await self._checked_resume(thread_id, request)
        metadata = {**request.metadata}
        if temporary:
            metadata["temporary"] = request.on_completion == "delete"
        record = RunRecord(
            run_id=str(uuid.uuid4()),
            thread_id=thread_id,
            owner=principal,
            assistant_id=request.assistant_id,
            multitask_strategy=request.multitask_strategy,
            metadata=metadata,
            kwargs=request.to_kwargs(),
            replica=self._replica,
            reserved_tokens=reserved,
            fresh_thread=fresh,
        )
        await self._events.open(thread_id, record.run_id)
        admission = await self._store.admit(record)
        if not admission.started and request.multitask_strategy == "reject":
            await self._events.delete(thread_id, record.run_id)
            raise ThreadBusy(thread_id)
        if admission.started:
            record = replace(record, status="running", prior_status=prior)
            self._launch(record)
        else:
            record = replace(record, status="pending")
        action: Action = "rollback" if request.multitask_strategy == "rollback" else "interrupt"
        for waiting in admission.cancelled:
            await self._cancel_waiting(thread_id, waiting, action)
        if admission.revived is not None:
            await self._launch_waiting(thread_id, admission.revived)
        if admission.holder is not None and request.multitask_strategy in ("interrupt", "rollback"):
            await self._cancel_running(thread_id, admission.holder, action)
        return record

    async def _checked_resume(self, thread_id: str, request: RunRequest) -> RunRequest:
        """A `command.resume` for a thread paused for approval, checked against its
        pending tool calls *before* the run starts: once the graph resumes, the
        interrupt is spent, so decisions that do not fit are a 422 and the thread
        stays paused. The run's context then requires approval of the pending calls'
        tools (the approve node runs again on resume and must pause on the same
        calls to take the decisions, also when Studio resumes with no context).
        Other resumes (a thread not paused for approval) go through unchanged.
        Edited arguments are checked against the tool's schema here too (a 422, as
        on REST); without a registry (a core built for tests) the approve node checks
        them and pauses again if they do not fit."""
        snapshot = await self._graph.aget_state(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        )
        pending = pending_from_interrupts(
            item.value for task in snapshot.tasks for item in task.interrupts
        )
        if not pending:
            return request
        resume = (request.command or {}).get("resume")
        try:
            parse_decisions(resume, pending, self._tools)
        except InvalidDecisions as exc:
            raise InvalidApproval(
                "the decisions do not fit the pending tool calls: " + str(exc),
                details={"problems": exc.problems, "pending_tool_calls": pending},
            ) from exc
        extra = request.context.get("require_approval")
        required = [*(extra if isinstance(extra, list | tuple) else ()), *approval_names(pending)]
        context = {**request.context, "require_approval": list(dict.fromkeys(required))}
        return replace(request, context=context)

    async def _ensure_thread(
        self, principal: str, thread_id: str, request: RunRequest, stamp: dict[str, Any]
    ) -> SessionInfo:
        if request.if_not_exists != "create":
            row = await self._transcript.get_session(thread_id, principal)
            if row is None:
                raise ThreadNotFound(thread_id)
            return row
        # One statement's round trip either way: the insert is a no-op on a thread
        # that exists (RemoteGraph sends `create` on every run) and returns its row.
        row, _ = await self._transcript.create_thread(principal, thread_id, stamp)
        if row is None:  # another principal's id: not theirs to learn about
            raise ThreadNotFound(thread_id)
        return row

    # --- execution ---------------------------------------------------------------

    def _launch(self, record: RunRecord) -> None:
        # Its own context: the run outlives the request that created it, whose Redis
        # budget (persistence/redis_time.py) must not bound the run's Redis calls.
        task = asyncio.create_task(
            self._execute(record), name=f"run-{record.run_id}", context=unbudgeted_context()
        )
        self._running[record.run_id] = _Execution(task, record.thread_id, record.owner)
        self._slots.hold(record.thread_id, record.run_id)

    async def handoff(self, thread_id: str, run_id: str | None) -> None:
        """The slot was freed by someone else (a REST turn) and handed to `run_id`."""
        if run_id is not None:
            await self._launch_waiting(thread_id, run_id)

    async def _launch_waiting(self, thread_id: str, run_id: str) -> None:
        record = await self._store.get(thread_id, run_id)
        if record is None or record.done:  # gone: pass the slot on
            await self.handoff(thread_id, await self._store.free(thread_id, run_id))
            return
        record = replace(record, status="running", replica=self._replica)
        await self._store.put(record)
        self._launch(record)

    def _config(self, record: RunRecord, request: RunRequest) -> dict[str, Any]:
        configurable = {
            k: v
            for k, v in request.configurable.items()
            if k not in PROTECTED_CONFIGURABLE and not k.startswith("__")
        }
        # Authoritative: whatever the client sent, these are ours (Aegra #525).
        configurable.update(
            thread_id=record.thread_id,
            run_id=record.run_id,
            graph_id=self._graph_id,
            assistant_id=record.assistant_id,
            user_id=record.owner,
        )
        checkpoint = request.checkpoint or {}
        for key in ("checkpoint_id", "checkpoint_ns", "checkpoint_map"):
            if checkpoint.get(key):
                configurable[key] = checkpoint[key]
        config: dict[str, Any] = {
            "configurable": configurable,
            "run_id": uuid.UUID(record.run_id),
            "metadata": {
                **request.metadata,
                "run_id": record.run_id,
                "thread_id": record.thread_id,
                "graph_id": self._graph_id,
                "assistant_id": record.assistant_id,
            },
        }
        if request.tags:
            config["tags"] = list(request.tags)
        if request.recursion_limit:
            config["recursion_limit"] = request.recursion_limit
        return config

    async def _execute(self, record: RunRecord) -> None:
        request = RunRequest.from_kwargs(record.kwargs)
        thread_id, run_id = record.thread_id, record.run_id
        status, error = "success", None
        result: dict[str, Any] | None = None
        seen = _Seen()
        self._metrics.active_runs.inc()
        try:
            await self._events.append(
                thread_id, run_id, "metadata", {"run_id": run_id, "attempt": 1}
            )
            result = await self._stream_graph(record, request, seen)
        except asyncio.CancelledError:
            status = "interrupted"
        except AgentServerError as exc:
            # `code` and `status` let every surface answer as it would a direct call.
            error = {
                "error": type(exc).__name__,
                "message": exc.message,
                "code": exc.code,
                "status": exc.status_code,
            }
            if exc.details is not None:
                error["details"] = jsonable(exc.details)
            status = "error"
        except Exception as exc:
            log.exception("run %s failed", run_id)
            status, error = "error", {"error": type(exc).__name__, "message": str(exc)}
        finally:
            execution = self._running.get(run_id)
            action = execution.action if execution is not None else None
            try:
                with anyio.CancelScope(shield=True):
                    # Status, `end` and the slot must be settled even when cancelled.
                    await self._finish(record, status, error, action, seen, result)
            finally:
                if execution is not None:
                    execution.settle(status, error, result)

    async def _stream_graph(
        self, record: RunRecord, request: RunRequest, seen: _Seen
    ) -> dict[str, Any]:
        """Stream the graph into the log; returns the final values (+ `__interrupt__`)."""
        thread_id, run_id = record.thread_id, record.run_id
        modes = _modes(request)
        wanted = set(request.stream_modes)
        explicit_checkpoint = bool((request.checkpoint or {}).get("checkpoint_id"))
        flags = RunFlags(
            principal=record.owner,
            stream="messages" in wanted or "events" in wanted,
            # A run from an explicit checkpoint (a fork), continuing one (input None, a
            # resume), or on a temporary thread (the client's own conversation) sees
            # exactly its state, never the SQL past.
            as_given=explicit_checkpoint
            or request.input is None
            or request.command is not None
            or "temporary" in record.metadata
            or (record.fresh_thread and len(_input_messages(request)) > 1),
            # A thread with no stored turn, sent one message: anything before it is
            # left from runs that failed (as on REST).
            no_past=record.fresh_thread,
            # No input, no command: the run answers the state's last message again.
            retake=record.run_id if request.input is None and request.command is None else None,
        )
        graph_input: Any = Command(**request.command) if request.command else request.input
        config = self._config(record, request)
        config["configurable"][FLAGS_KEY] = flags
        kwargs: dict[str, Any] = {
            "context": _context(request),
            "stream_mode": sorted(modes),
            "subgraphs": request.subgraphs,
            # Per-step checkpoints by default, as the reference: Studio's history, time
            # travel and forks read them. A temporary thread's are deleted with it, so it
            # writes only its last (as REST turns do, `CHECKPOINT_DURABILITY`).
            "durability": request.durability
            or ("exit" if "temporary" in record.metadata else "async"),
        }
        if request.interrupt_before is not None:
            kwargs["interrupt_before"] = request.interrupt_before
        if request.interrupt_after is not None:
            kwargs["interrupt_after"] = request.interrupt_after
        values: Any = {}
        interrupts: list[Any] = []

        async def emit(ns: tuple[str, ...], mode: str, chunk: Any) -> None:
            nonlocal values
            if not ns and mode == "values":
                values = chunk
            if not ns and mode == "updates" and isinstance(chunk, dict):
                interrupts.extend(chunk.get("__interrupt__", ()))
                seen.observe(chunk)
            if mode in wanted:
                name = "|".join((mode, *ns)) if ns else mode
                await self._events.append(thread_id, run_id, name, jsonable(chunk))

        # Per-step checkpoints need only be stored by the run's end: they commit
        # together then (or within 50 ms on a saver that defers: `deferred_writes`).
        deferring = (
            deferred_writes(self._checkpointer, thread_id)
            if kwargs["durability"] == "async"
            else contextlib.nullcontext()
        )
        async with deferring:
            if "events" in wanted:
                root = str(config["run_id"])
                stream = self._graph.astream_events(graph_input, config, version="v2", **kwargs)
                async with contextlib.aclosing(stream):
                    async for event in stream:
                        if event["event"] == "on_chain_stream" and event["run_id"] == root:
                            part = event["data"]["chunk"]
                            ns, mode, chunk = part if request.subgraphs else ((), *part)
                            await emit(tuple(ns), mode, chunk)
                        else:
                            await self._events.append(thread_id, run_id, "events", jsonable(event))
            else:
                stream = self._graph.astream(graph_input, config, **kwargs)
                async with contextlib.aclosing(stream):
                    async for part in stream:
                        ns, mode, chunk = part if request.subgraphs else ((), *part)
                        await emit(tuple(ns), mode, chunk)
        result = jsonable(values) if isinstance(values, dict) else {"value": jsonable(values)}
        if interrupts:
            result["__interrupt__"] = jsonable(interrupts)
        return result

    async def _finish(
        self,
        record: RunRecord,
        status: str,
        error: dict[str, Any] | None,
        action: Action | None,
        seen: _Seen,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Settle a run, in the order readers rely on: once a reader sees `end`, the
        record has its status (and `result`, its final values), a temporary thread is
        gone and the slot is free."""
        thread_id, run_id = record.thread_id, record.run_id
        self._metrics.active_runs.dec()
        nxt = None
        try:
            if error is not None:
                await self._events.append(thread_id, run_id, "error", error)
            if action == "rollback":
                # Leave no trace of it: its checkpoints (and pending writes) go too.
                await self._checkpointer.adelete_for_runs([run_id])
                await self._store.delete(thread_id, run_id)
            else:
                await self._store.put(replace(record, status=status, error=error), result=result)  # type: ignore[arg-type]
            await self._settle(record.owner, record.reserved_tokens, seen.tokens)
            if record.metadata.get("temporary"):
                await self._delete_thread(record.owner, thread_id)
            elif action != "rollback":
                await self._record_thread_status(record, error, seen)
        except Exception:
            log.exception("could not record the end of run %s", run_id)
        finally:
            self._running.pop(run_id, None)
            await self._slots.drop(thread_id, run_id)
            try:
                nxt = await self._store.free(thread_id, run_id)
                await self._events.close(thread_id, run_id, {"status": status})
            except Exception:
                log.exception("could not free thread %s after run %s", thread_id, run_id)
            await self.handoff(thread_id, nxt)

    async def _record_thread_status(
        self, record: RunRecord, error: dict[str, Any] | None, seen: _Seen
    ) -> None:
        """What the run left the thread as (`Threads` reads it): `error` with the error,
        `interrupted` when it paused, else `idle`. One SQL write, and none when a run
        that started at once leaves the status it found."""
        status = "error" if error is not None else "interrupted" if seen.paused else "idle"
        if error is None and record.prior_status == status:
            return
        await self._transcript.update_thread(
            record.thread_id, record.owner, status=status, error=error
        )
        if self._on_status is not None:
            self._on_status(record.thread_id)

    async def _delete_thread(self, principal: str, thread_id: str) -> None:
        """A temporary thread's state and row; its run records stay until they expire
        (a `wait` on the run still reads its outcome)."""
        await self._checkpointer.adelete_thread(thread_id)
        await self._transcript.delete_session(thread_id, principal)

    # --- read --------------------------------------------------------------------

    async def get(self, principal: str, thread_id: str, run_id: str) -> RunRecord:
        record = await self._store.get(thread_id, run_id)
        if record is None or record.owner != principal:
            raise RunNotFound(run_id)
        return record

    async def list(
        self,
        principal: str,
        thread_id: str,
        *,
        limit: int = 10,
        offset: int = 0,
        status: str | None = None,
    ) -> list[RunRecord]:
        if await self._transcript.get_session(thread_id, principal) is None:
            raise ThreadNotFound(thread_id)
        records = [r for r in await self._store.list(thread_id) if r.owner == principal]
        if status is not None:
            records = [r for r in records if r.status == status]
        return records[offset : offset + limit]

    async def _alive(self, thread_id: str, run_id: str) -> bool:
        """Could events still come? (The run holds the slot or waits for it.)"""
        if run_id in self._running:
            return True
        if await self._store.active(thread_id) == run_id:
            return True
        return run_id in await self._store.pending(thread_id)

    async def stream(
        self, principal: str, thread_id: str, run_id: str, *, after: str | None = None
    ) -> AsyncIterator[RunEvent]:
        """The run's events after `after` (None: from its first), live until its `end`.
        A run whose log expired gets its outcome (values or error) and `end`."""
        record = await self.get(principal, thread_id, run_id)
        last: RunEvent | None = None
        async for event in self._events.read(
            thread_id, run_id, after=after, alive=partial(self._alive, thread_id, run_id)
        ):
            last = event
            yield event
        if last is not None and last.event == END:
            return
        record = await self._store.get(thread_id, run_id) or record
        if not record.done:  # the writer died mid-run: nothing more will come
            yield RunEvent("0-0", "error", {"error": "RunLost", "message": "the run was lost"})
        elif record.error is not None:
            yield RunEvent("0-0", "error", record.error)
        elif after is None and last is None:  # the log expired: the outcome will do
            yield RunEvent("0-0", "values", await self._store.result(thread_id, run_id) or {})
        yield RunEvent("0-0", END, {"status": record.status})

    async def wait(self, principal: str, thread_id: str, run_id: str) -> dict[str, Any]:
        """Block until the run ends; its final values (`__interrupt__` when paused,
        `__error__` when it failed)."""
        local = self._running.get(run_id)
        if local is not None and (local.thread_id, local.owner) != (thread_id, principal):
            local = None  # not the caller's: the store path answers 404
        if local is not None:
            # Executing here: its outcome is in memory, so the log and the store need
            # not be read back (five Redis round trips a `runs.wait`). Anything but a
            # plain success or failure (a cancel, a rollback) reads the store as below.
            await local.ended.wait()
        if local is not None and local.action is None and local.status in ("success", "error"):
            status, error, result = local.status, local.error, local.result
        else:
            if local is None:
                async for _ in self.stream(principal, thread_id, run_id):
                    pass
            record = await self.get(principal, thread_id, run_id)
            status, error = record.status, record.error
            result = None if status == "error" else await self._store.result(thread_id, run_id)
        if status == "error":
            return {"__error__": error or {"error": "Error", "message": "run failed"}}
        return result or {}

    # --- cancel ------------------------------------------------------------------

    async def cancel(
        self,
        principal: str,
        thread_id: str,
        run_id: str,
        *,
        wait: bool = False,
        action: Action = "interrupt",
    ) -> RunRecord | None:
        """Stop a run: a waiting one never runs, a running one stops at its next step.
        `rollback` also deletes it and what it wrote. Returns the record (None if
        rolled back)."""
        record = await self.get(principal, thread_id, run_id)
        if record.done:
            return record
        if record.status == "pending" and await self._cancel_waiting(thread_id, run_id, action):
            return await self._store.get(thread_id, run_id)
        await self._cancel_running(thread_id, run_id, action)
        if wait:
            async for _ in self.stream(principal, thread_id, run_id, after="$"):
                pass
        return await self._store.get(thread_id, run_id)

    async def _cancel_waiting(self, thread_id: str, run_id: str, action: Action) -> bool:
        if not await self._store.unqueue(thread_id, run_id):
            return False
        record = await self._store.get(thread_id, run_id)
        if record is not None:  # it never ran: its reservation goes back whole
            await self._settle(record.owner, record.reserved_tokens, 0)
        if action == "rollback":
            await self._store.delete(thread_id, run_id)
            await self._events.delete(thread_id, run_id)
        elif record is not None:
            await self._store.put(replace(record, status="interrupted"))
            await self._events.close(thread_id, run_id, {"status": "interrupted"})
        return True

    def _cancel_local(self, run_id: str, action: Action) -> bool:
        execution = self._running.get(run_id)
        if execution is None:
            return False
        execution.action = action
        execution.task.cancel()
        return True

    async def _cancel_running(self, thread_id: str, run_id: str, action: Action) -> None:
        if self._cancel_local(run_id, action):
            return
        record = await self._store.get(thread_id, run_id)
        if record is None or record.done or self._redis is None or record.replica is None:
            return
        message = json.dumps({"run_id": run_id, "action": action})
        await self._redis.publish(self._channel(record.replica), message)
