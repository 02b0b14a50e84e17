"""`open_run_core`: the run core's objects, built once per app from its resources.

In-process store and event log without Redis (one process is then the only server),
Redis-backed ones with it, so every replica sees the same slots, queues, records and
events. The app lifespan opens it; tests open it the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from langgraph.graph.state import CompiledStateGraph

from agent_server.observability.metrics import Metrics
from agent_server.persistence.instrumented import InstrumentedSaver
from agent_server.resources import Resources
from agent_server.runs.budget import TokenBudget
from agent_server.runs.events import EventLog, LocalEventLog, RedisEventLog
from agent_server.runs.runs import Runs
from agent_server.runs.slots import SlotLocks
from agent_server.runs.store import LocalRunStore, RedisRunStore, RunStore
from agent_server.runs.threads import Threads
from agent_server.runs.turns import Turns


@dataclass(frozen=True, slots=True)
class RunCore:
    store: RunStore
    events: EventLog
    threads: Threads
    runs: Runs
    turns: Turns
    """The REST surface's direct path (no run record, no event log), on the same slots."""


@asynccontextmanager
async def open_run_core(
    resources: Resources,
    *,
    graph: CompiledStateGraph,
    checkpointer: InstrumentedSaver,
    metrics: Metrics,
    budget: TokenBudget | None = None,
    replica_id: str | None = None,
) -> AsyncIterator[RunCore]:
    settings = resources.settings
    store: RunStore
    events: EventLog
    if resources.redis is None:
        store, events = LocalRunStore(), LocalEventLog()
    else:
        prefix = settings.redis_key_prefix
        store = RedisRunStore(
            resources.redis,
            prefix=prefix,
            lock_seconds=settings.lock_ttl_seconds,
            ttl_seconds=settings.session_ttl_seconds,
        )
        events = RedisEventLog(
            resources.redis, prefix=prefix, retain_seconds=settings.session_ttl_seconds
        )

    def forget(thread_id: str) -> None:
        # `Turns` (built below) remembers sessions in-process: one deleted as a thread
        # is gone there too, and one a run paused (or unpaused) is read again from SQL,
        # so the next REST message to it gets 409 `approval_pending`.
        turns.forget(thread_id)

    threads = Threads(
        graph=graph,
        checkpointer=checkpointer,
        transcript=resources.transcript,
        runs=store,
        on_delete=forget,
    )
    runs = Runs(
        graph=graph,
        checkpointer=checkpointer,
        transcript=resources.transcript,
        store=store,
        events=events,
        settings=settings,
        metrics=metrics,
        redis=resources.redis,
        budget=budget,
        replica_id=replica_id,
        on_status=forget,
        tools=resources.deps.tools,
    )
    locks = SlotLocks(
        store,
        heartbeat_seconds=settings.lock_ttl_seconds / 3 if resources.redis is not None else None,
        handoff=runs.handoff,
    )
    turns = Turns(
        graph=graph,
        checkpointer=checkpointer,
        deps=resources.deps,
        locks=locks,
        metrics=metrics,
        budget=budget,
    )
    await runs.start()
    try:
        yield RunCore(store, events, threads, runs, turns)
    finally:
        await runs.aclose()
