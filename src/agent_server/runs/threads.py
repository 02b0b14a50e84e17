"""`Threads`: sessions as the LangGraph Platform API sees them (threads = sessions).

One object for every surface: a session made by `POST /api/chat/session` is a thread
here, and a thread made by langgraph-sdk is a session in `GET /api/chat/sessions`,
because both are one row of the `sessions` table (metadata, stored status) plus the
checkpointer's checkpoints under `thread_id = session id`.

What a thread *is* at a given moment comes from three places, read here and nowhere
else:

- the SQL row: owner, metadata, timestamps, and the status the last run left
  (`idle`, `interrupted` or `error`, with the error);
- the run store: `busy` while a run holds the thread's slot or waits for it (never
  stored, so a replica that died cannot leave a thread busy forever);
- the checkpointer: `values` (the latest state), `interrupts` (the state's tasks),
  and whether the graph stopped with work left (`next`), which is `interrupted`.

Ownership as on REST: every method takes the caller's principal, and a stranger gets
`ThreadNotFound` (404), never a hint that the id exists. No FastAPI here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import InvalidUpdateError
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot

from agent_server.errors import InvalidRequest, ThreadBusy, ThreadExists, ThreadNotFound
from agent_server.persistence.repository import SessionInfo, TranscriptRepository

ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
STATUSES: frozenset[str] = frozenset({"idle", "busy", "interrupted", "error"})
STORED_STATUSES: frozenset[str] = frozenset({"idle", "interrupted", "error"})
READ_CONCURRENCY = 8
"""Threads whose state a search reads at once."""
SEARCH_BATCH = 100
"""Rows read per SQL page when a search filters on something SQL cannot see."""


class RunActivity(Protocol):
    """The part of the run store a thread's status and deletion depend on
    (`runs.store.RunStore` has it)."""

    async def active(self, thread_id: str) -> str | None: ...

    async def pending(self, thread_id: str) -> list[str]: ...

    async def delete_thread(self, thread_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Thread:
    """A thread as clients see it: the session row plus its latest state."""

    thread_id: str
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any]
    status: ThreadStatus
    values: dict[str, Any] = field(default_factory=dict)
    interrupts: dict[str, list[Any]] = field(default_factory=dict)
    """`{task_id: [Interrupt, …]}` of the latest checkpoint (`{}` when none)."""
    error: dict[str, Any] | None = None


def thread_config(
    thread_id: str, checkpoint: dict[str, Any] | None = None, checkpoint_id: str | None = None
) -> RunnableConfig:
    """The config that addresses a thread's head, or one of its checkpoints.

    `checkpoint` is the wire's `{thread_id?, checkpoint_ns?, checkpoint_id?,
    checkpoint_map?}`; its `thread_id`, if any, is ignored: the path's id is the
    one ownership was checked for.
    """
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    for key, value in (checkpoint or {}).items():
        if key != "thread_id" and value is not None:
            configurable[key] = value
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def snapshot_interrupts(snapshot: StateSnapshot) -> dict[str, list[Any]]:
    return {task.id: list(task.interrupts) for task in snapshot.tasks if task.interrupts}


def _contains(values: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(key in values and values[key] == value for key, value in wanted.items())


class Threads:
    """Create, read, search, change and delete threads (= sessions) of one principal.

    Built once in the app lifespan with the graph (for state, history and
    `update_state`, which need the graph's channels), the checkpointer behind it,
    the SQL transcript and the run store.
    """

    def __init__(
        self,
        *,
        graph: CompiledStateGraph,
        checkpointer: BaseCheckpointSaver,
        transcript: TranscriptRepository,
        runs: RunActivity,
        on_delete: Callable[[str], None] | None = None,
    ) -> None:
        self._graph = graph
        self._checkpointer = checkpointer
        self._transcript = transcript
        self._runs = runs
        self._on_delete = on_delete
        """Told each deleted thread's id (the REST path's in-process session cache)."""

    # --- rows -----------------------------------------------------------------

    async def _row(self, principal: str, thread_id: str) -> SessionInfo:
        row = await self._transcript.get_session(thread_id, principal)
        if row is None:
            raise ThreadNotFound(thread_id)
        return row

    async def _busy(self, thread_id: str) -> bool:
        return await self._runs.active(thread_id) is not None or bool(
            await self._runs.pending(thread_id)
        )

    async def _thread(
        self, row: SessionInfo, *, busy: bool | None = None, read_state: bool = True
    ) -> Thread:
        snapshot: StateSnapshot | None = None
        try:
            if read_state:
                snapshot = await self._graph.aget_state(thread_config(row.id))
        except (ValueError, TypeError, InvalidUpdateError):
            # A failed run's input the graph cannot take (a bad message type) sits in
            # the checkpoint's pending writes: the thread must stay readable (and
            # deletable); its `error` says what went wrong.
            snapshot = None
        if busy is None:
            busy = await self._busy(row.id)
        interrupts = snapshot_interrupts(snapshot) if snapshot is not None else {}
        pending = bool(snapshot.next) if snapshot is not None else False
        status: ThreadStatus
        if busy:
            status = "busy"
        elif row.status == "error":
            status = "error"
        elif interrupts or pending or row.status == "interrupted":
            status = "interrupted"
        else:
            status = "idle"
        return Thread(
            thread_id=row.id,
            created_at=row.created_at,
            updated_at=row.last_active_at,
            metadata=row.metadata,
            status=status,
            values=dict(snapshot.values or {}) if snapshot is not None else {},
            interrupts=interrupts,
            error=row.error if status == "error" else None,
        )

    async def _threads(self, rows: Sequence[SessionInfo]) -> list[Thread]:
        found: list[Thread] = []
        for start in range(0, len(rows), READ_CONCURRENCY):
            chunk = rows[start : start + READ_CONCURRENCY]
            found += await asyncio.gather(*(self._thread(row) for row in chunk))
        return found

    # --- threads --------------------------------------------------------------

    async def create(
        self,
        principal: str,
        *,
        thread_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        if_exists: Literal["raise", "do_nothing"] = "raise",
    ) -> Thread:
        """A new thread, under the id the client chose if it chose one.

        An id already taken is a 409 `thread_exists` with `if_exists="raise"`;
        with `do_nothing` the caller's own thread comes back unchanged, while
        someone else's is still a 409 (answering 404 or the thread would tell a
        stranger something either way; the ids are random UUIDs, so a clash with
        another tenant is a client bug, not a probe that could succeed).
        """
        chosen = thread_id is not None
        thread_id = thread_id or str(uuid.uuid4())
        row, created = await self._transcript.create_thread(principal, thread_id, metadata or {})
        if created:
            assert row is not None
            # An id we just made up has no checkpoint to read; one the client chose may
            # (a REST session whose first turn failed leaves state but no row).
            return await self._thread(row, busy=False, read_state=chosen)
        if row is None or if_exists == "raise":
            raise ThreadExists(thread_id)
        return await self._thread(row)

    async def get(self, principal: str, thread_id: str) -> Thread:
        return await self._thread(await self._row(principal, thread_id))

    async def exists(self, principal: str, thread_id: str) -> bool:
        return await self._transcript.get_session(thread_id, principal) is not None

    async def search(
        self,
        principal: str,
        *,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        status: str | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "updated_at",
        sort_order: Literal["asc", "desc"] = "desc",
    ) -> list[Thread]:
        """The caller's threads matching every filter given, `offset`/`limit` applied
        after filtering. Metadata, ids and sorting are SQL; `values` and a `busy`
        status can only be judged per thread, so those searches page through SQL in
        batches until they have `limit` matches."""
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"unknown thread status {status!r}")
        if limit <= 0:
            return []
        stored = None
        if status in STORED_STATUSES:
            # A stored `idle` thread may also be interrupted (its graph stopped with
            # work left) without a run having said so: read it and judge.
            stored = ["idle", "interrupted"] if status in ("idle", "interrupted") else [status]
        exact = values is None and status is None
        batch = limit if exact else SEARCH_BATCH
        sql_offset = offset if exact else 0
        to_skip = 0 if exact else offset
        found: list[Thread] = []
        while True:
            rows = await self._transcript.search_threads(
                principal,
                metadata=metadata,
                ids=list(ids) if ids is not None else None,
                statuses=stored,
                sort_by=sort_by,
                sort_order=sort_order,
                limit=batch,
                offset=sql_offset,
            )
            # Each thread's state and slot are separate reads: issue a few at once
            # (Agent Chat UI's sidebar asks for 100 threads at a time), not all, so
            # one search cannot flood the store's connections.
            for thread in await self._threads(rows):
                if status is not None and thread.status != status:
                    continue
                if values is not None and not _contains(thread.values, values):
                    continue
                if to_skip:
                    to_skip -= 1
                    continue
                found.append(thread)
                if len(found) == limit:
                    return found
            if exact or len(rows) < batch:
                return found
            sql_offset += batch

    async def count(
        self,
        principal: str,
        *,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        status: str | None = None,
    ) -> int:
        if values is None and status is None:
            return await self._transcript.count_threads(principal, metadata=metadata)
        # `values` and statuses are judged per thread (see `search`).
        matches = await self.search(
            principal, metadata=metadata, values=values, status=status, limit=10**9
        )
        return len(matches)

    async def update(self, principal: str, thread_id: str, metadata: dict[str, Any]) -> Thread:
        """Merge `metadata` into the thread's (top-level keys win), like the reference."""
        row = await self._transcript.update_thread(thread_id, principal, metadata=metadata)
        if row is None:
            raise ThreadNotFound(thread_id)
        return await self._thread(row)

    async def settle(
        self, principal: str, thread_id: str, *, error: dict[str, Any] | None = None
    ) -> Thread:
        """Record what a run left behind (call it when a run ends): `error` with the
        error, else `interrupted` when the graph stopped with work left, else `idle`."""
        row = await self._row(principal, thread_id)
        if error is not None:
            status = "error"
        else:
            snapshot = await self._graph.aget_state(thread_config(thread_id))
            status = "interrupted" if snapshot.next or snapshot_interrupts(snapshot) else "idle"
        row = await self._transcript.update_thread(thread_id, principal, status=status, error=error)
        if row is None:
            raise ThreadNotFound(thread_id)
        return await self._thread(row)

    async def delete(self, principal: str, thread_id: str) -> None:
        """Checkpoints, run records and transcript; 409 while a run holds or waits for
        the thread (deleting under it would leave it writing into nothing).
        Checkpoints go first: if the store is down we fail before SQL forgets the
        thread, and a retry finds it."""
        await self._row(principal, thread_id)
        if await self._busy(thread_id):
            raise ThreadBusy(thread_id)
        await self._checkpointer.adelete_thread(thread_id)
        await self._runs.delete_thread(thread_id)
        await self._transcript.delete_session(thread_id, principal)
        if self._on_delete is not None:
            self._on_delete(thread_id)

    async def copy(self, principal: str, thread_id: str) -> Thread:
        """A new thread with the same metadata and every checkpoint of this one."""
        row = await self._row(principal, thread_id)
        new_id = str(uuid.uuid4())
        new_row, _ = await self._transcript.create_thread(principal, new_id, row.metadata)
        assert new_row is not None
        await copy_checkpoints(self._checkpointer, thread_id, new_id)
        return await self._thread(new_row, busy=False)

    # --- state ----------------------------------------------------------------

    async def state(
        self,
        principal: str,
        thread_id: str,
        *,
        checkpoint: dict[str, Any] | None = None,
        checkpoint_id: str | None = None,
        subgraphs: bool = False,
    ) -> StateSnapshot:
        """The thread's state at its head, or at a checkpoint. A checkpoint the
        thread does not have is a 404, not an empty state."""
        await self._row(principal, thread_id)
        config = thread_config(thread_id, checkpoint, checkpoint_id)
        snapshot = await self._graph.aget_state(config, subgraphs=subgraphs)
        wanted = config["configurable"].get("checkpoint_id")
        if wanted and snapshot.created_at is None:  # LangGraph's answer for "no such one"
            raise ThreadNotFound(thread_id, checkpoint_id=wanted)
        return snapshot

    async def update_state(
        self,
        principal: str,
        thread_id: str,
        values: dict[str, Any] | list[Any] | None,
        *,
        as_node: str | None = None,
        checkpoint: dict[str, Any] | None = None,
        checkpoint_id: str | None = None,
    ) -> dict[str, Any]:
        """Write `values` as if node `as_node` returned them, on the head or on a
        checkpoint (a fork); `as_node="__copy__"` copies the checkpoint as a new head
        (Studio's "re-run from here"). Returns the new checkpoint's
        `{thread_id, checkpoint_ns, checkpoint_id}`."""
        await self._row(principal, thread_id)
        if await self._busy(thread_id):
            raise ThreadBusy(thread_id)
        config = thread_config(thread_id, checkpoint, checkpoint_id)
        try:
            new_config = await self._graph.aupdate_state(config, values, as_node=as_node)
        except (InvalidUpdateError, ValueError, KeyError, TypeError, NotImplementedError) as exc:
            # What LangGraph and LangChain raise for values the graph cannot take
            # (a non-dict update, a message that is not one): the client's mistake.
            raise InvalidRequest(f"cannot update the state: {exc}") from exc
        configurable = new_config["configurable"]
        await self._transcript.update_thread(thread_id, principal)  # updated_at
        return {
            "thread_id": configurable["thread_id"],
            "checkpoint_ns": configurable.get("checkpoint_ns", ""),
            "checkpoint_id": configurable["checkpoint_id"],
        }

    async def history(
        self,
        principal: str,
        thread_id: str,
        *,
        limit: int = 10,
        before: dict[str, Any] | str | None = None,
        metadata: dict[str, Any] | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> list[StateSnapshot]:
        """Past states, newest first: at most `limit`, older than `before` (a
        checkpoint or its id), whose checkpoint metadata contains `metadata`, in the
        namespace of `checkpoint` (root by default)."""
        await self._row(principal, thread_id)
        config = thread_config(thread_id, checkpoint)
        before_config = None
        if isinstance(before, str):
            before_config = thread_config(thread_id, checkpoint_id=before)
        elif before:
            before_config = thread_config(thread_id, before)
        return [
            snapshot
            async for snapshot in self._graph.aget_state_history(
                config, filter=metadata or None, before=before_config, limit=limit
            )
        ]


async def copy_checkpoints(saver: BaseCheckpointSaver, source: str, target: str) -> None:
    """Every checkpoint (and pending write) of `source` under `target`.

    The saver's own `acopy_thread` when it has one (ours in Redis does); LangGraph's
    SQLite saver has none, so then the copy is written through the saver's public
    `aput`/`aput_writes`, oldest first so each checkpoint finds its parent.
    """
    try:
        await saver.acopy_thread(source, target)
        return
    except NotImplementedError:
        pass
    tuples = [item async for item in saver.alist({"configurable": {"thread_id": source}})]
    for item in reversed(tuples):
        configurable = item.config["configurable"]
        ns = configurable.get("checkpoint_ns", "")
        parent_id = (item.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        target_config: RunnableConfig = {
            "configurable": {"thread_id": target, "checkpoint_ns": ns, "checkpoint_id": parent_id}
        }
        metadata = dict(item.metadata or {})
        stored = await saver.aput(
            target_config,
            item.checkpoint,
            metadata,  # type: ignore[arg-type]
            item.checkpoint.get("channel_versions", {}),
        )
        by_task: dict[tuple[str, str], list[tuple[str, Any]]] = {}
        for task_id, channel, value in item.pending_writes or []:
            by_task.setdefault((task_id, ""), []).append((channel, value))
        for (task_id, path), writes in by_task.items():
            await saver.aput_writes(stored, writes, task_id, path)
