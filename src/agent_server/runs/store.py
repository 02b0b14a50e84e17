"""Where runs are recorded and who may run on a thread: the `RunStore`.

A thread runs one run at a time: two runs interleaving on one thread would each read
the other's half-written checkpoint. The thread's *slot* names the run that executes
now; runs admitted while it is taken wait in the thread's FIFO *queue* (strategy
`enqueue`), are refused (`reject`), or make the holder and every waiting run give way
(`interrupt`, `rollback`). Admission is one atomic step, in-process or in Redis, so
every replica gets the same answer.

The slot is also the REST surface's session lock: `take` / `free` cost what the old
lock did (one `SET NX PX`, one compare-and-delete script), and `free` hands the slot
to the first waiting run, if any, in the same round trip.

Redis layout (every key carries the hash tag `{<thread>}`, so a thread's keys share
one cluster slot and each script runs atomically on them):

    <p>:slot:{<thread>}    STRING  id of the run holding the thread; PX = `lock_ms`,
                                   kept alive by the holder's heartbeat, so a dead
                                   replica's slot frees itself.
    <p>:runs:{<thread>}    HASH    run id -> run record (JSON); "<run id>:result" ->
                                   the final values (JSON). PEXPIRE = the session TTL,
                                   renewed on every write.
    <p>:queue:{<thread>}   LIST    ids of the runs waiting for the slot, oldest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from agent_server.runs.serialize import dumps, loads

log = logging.getLogger(__name__)

RunStatus = Literal["pending", "running", "success", "error", "timeout", "interrupted"]
MultitaskStrategy = Literal["reject", "enqueue", "interrupt", "rollback"]
TERMINAL: frozenset[str] = frozenset({"success", "error", "timeout", "interrupted"})
LOCAL_RUNS_PER_THREAD = 100
"""Run records an in-process store keeps per thread (oldest forgotten first)."""
LOCAL_THREADS = 10_000
"""Threads whose run records an in-process store keeps (least recently used forgotten)."""


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One execution of the graph on a thread, as clients see it (plain data)."""

    run_id: str
    thread_id: str
    owner: str
    assistant_id: str
    status: RunStatus = "pending"
    multitask_strategy: MultitaskStrategy = "enqueue"
    metadata: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    """The request that started it (JSON-able), so any replica can execute it."""
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    error: dict[str, Any] | None = None
    replica: str | None = None
    """The replica executing it (cancels travel there)."""
    reserved_tokens: int = 0
    """Tokens of the daily budget set aside for it, settled when it ends."""
    fresh_thread: bool = False
    """The thread had no stored turn when the run was admitted: what its state holds
    before the run's own message is left from runs that failed."""
    prior_status: str | None = None
    """The thread's stored status when the run started at once (None: it queued or the
    thread is temporary): the run's end writes the status only if it changed."""

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def to_json(self) -> bytes:
        # Shallow: `asdict` deep-copies `kwargs` (the request) only to serialise it.
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return dumps(data)

    @classmethod
    def from_json(cls, raw: str | bytes) -> RunRecord:
        data = loads(raw)
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["updated_at"] = datetime.fromisoformat(data["updated_at"])
        return cls(**data)


_RECORD_FIELDS = tuple(f.name for f in fields(RunRecord))


@dataclass(frozen=True, slots=True)
class Admission:
    """What admitting a run decided."""

    started: bool
    """The run holds the slot now: the caller executes it."""
    holder: str | None = None
    """The run that held the slot (it must give way for `interrupt`/`rollback`)."""
    cancelled: tuple[str, ...] = ()
    """Waiting runs taken off the queue by `interrupt`/`rollback`."""
    revived: str | None = None
    """A waiting run that found the slot free (its holder died) and now holds it:
    the caller executes it too."""


class RunStore(Protocol):
    """Run records plus each thread's slot and queue."""

    async def take(self, thread_id: str, run_id: str) -> bool:
        """Take a free slot without a run record (the REST fast path)."""
        ...

    async def free(self, thread_id: str, run_id: str) -> str | None:
        """Give the slot up; returns the waiting run that now holds it, if any."""
        ...

    async def admit(self, record: RunRecord) -> Admission:
        """Record a run and take the slot for it, or queue it, as its strategy says.
        `reject` with the slot taken or a queue raises nothing: `started` is False and
        nothing is stored (the caller answers 409)."""
        ...

    async def active(self, thread_id: str) -> str | None:
        """The run holding the thread's slot."""
        ...

    async def pending(self, thread_id: str) -> list[str]: ...

    async def unqueue(self, thread_id: str, run_id: str) -> bool:
        """Take a waiting run off the queue; False if it was not waiting."""
        ...

    async def get(self, thread_id: str, run_id: str) -> RunRecord | None: ...

    async def put(self, record: RunRecord, *, result: Any = None) -> None:
        """Write (a new status of) a run record; with `result`, the run's final values
        in the same write (a run's end is one round trip)."""
        ...

    async def list(self, thread_id: str) -> list[RunRecord]:
        """A thread's runs, newest first."""
        ...

    async def delete(self, thread_id: str, run_id: str) -> None: ...

    async def delete_thread(self, thread_id: str) -> None: ...

    async def result(self, thread_id: str, run_id: str) -> Any: ...

    async def heartbeat(self, thread_id: str, run_id: str) -> bool:
        """Keep a held slot alive; False if the run no longer holds it."""
        ...


class LocalRunStore:
    """The store of a single process (embedded mode): dicts on the event loop.

    No await between a check and the change it guards, so every method is atomic.
    """

    def __init__(
        self, *, runs_per_thread: int = LOCAL_RUNS_PER_THREAD, threads: int = LOCAL_THREADS
    ) -> None:
        self._slots: dict[str, str] = {}
        self._queues: dict[str, deque[str]] = {}
        self._runs: OrderedDict[str, OrderedDict[str, RunRecord]] = OrderedDict()
        self._results: dict[str, Any] = {}
        self._runs_per_thread = runs_per_thread
        self._threads = threads

    async def take(self, thread_id: str, run_id: str) -> bool:
        if thread_id in self._slots or self._queues.get(thread_id):
            return False
        self._slots[thread_id] = run_id
        return True

    async def free(self, thread_id: str, run_id: str) -> str | None:
        if self._slots.get(thread_id) != run_id:
            return None
        queue = self._queues.get(thread_id)
        if queue:
            nxt = queue.popleft()
            if not queue:
                del self._queues[thread_id]
            self._slots[thread_id] = nxt
            return nxt
        del self._slots[thread_id]
        return None

    async def admit(self, record: RunRecord) -> Admission:
        thread_id = record.thread_id
        holder = self._slots.get(thread_id)
        queue = self._queues.get(thread_id)
        if holder is None and not queue:
            self._slots[thread_id] = record.run_id
            self._remember(replace(record, status="running"))
            return Admission(started=True)
        if record.multitask_strategy == "reject":
            return Admission(started=False, holder=holder)
        revived = None
        if holder is None and queue:  # cannot happen in one process; kept for symmetry
            revived = holder = queue.popleft()
            self._slots[thread_id] = holder
        cancelled: tuple[str, ...] = ()
        queue = self._queues.setdefault(thread_id, deque())
        if record.multitask_strategy in ("interrupt", "rollback"):
            cancelled = tuple(queue)
            queue.clear()
        queue.append(record.run_id)
        self._remember(replace(record, status="pending"))
        return Admission(started=False, holder=holder, cancelled=cancelled, revived=revived)

    def _remember(self, record: RunRecord) -> None:
        runs = self._runs.setdefault(record.thread_id, OrderedDict())
        self._runs.move_to_end(record.thread_id)
        runs[record.run_id] = record
        while len(runs) > self._runs_per_thread:
            old, _ = runs.popitem(last=False)
            self._results.pop(old, None)
        while len(self._runs) > self._threads:
            _, forgotten = self._runs.popitem(last=False)
            for old in forgotten:
                self._results.pop(old, None)

    async def active(self, thread_id: str) -> str | None:
        return self._slots.get(thread_id)

    async def pending(self, thread_id: str) -> list[str]:
        return list(self._queues.get(thread_id, ()))

    async def unqueue(self, thread_id: str, run_id: str) -> bool:
        queue = self._queues.get(thread_id)
        if not queue or run_id not in queue:
            return False
        queue.remove(run_id)
        if not queue:
            del self._queues[thread_id]
        return True

    async def get(self, thread_id: str, run_id: str) -> RunRecord | None:
        return self._runs.get(thread_id, {}).get(run_id)

    async def put(self, record: RunRecord, *, result: Any = None) -> None:
        self._remember(replace(record, updated_at=now()))
        if result is not None:
            self._results[record.run_id] = result

    async def list(self, thread_id: str) -> list[RunRecord]:
        return list(reversed(self._runs.get(thread_id, {}).values()))

    async def delete(self, thread_id: str, run_id: str) -> None:
        self._runs.get(thread_id, {}).pop(run_id, None)
        self._results.pop(run_id, None)

    async def delete_thread(self, thread_id: str) -> None:
        for run_id in self._runs.pop(thread_id, {}):
            self._results.pop(run_id, None)

    async def result(self, thread_id: str, run_id: str) -> Any:
        return self._results.get(run_id)

    async def heartbeat(self, thread_id: str, run_id: str) -> bool:
        return self._slots.get(thread_id) == run_id


# --- Redis ------------------------------------------------------------------------

_FREE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local nxt = redis.call('LPOP', KEYS[2])
if nxt then
  redis.call('SET', KEYS[1], nxt, 'PX', ARGV[2])
  return nxt
end
redis.call('DEL', KEYS[1])
return false
"""
"""KEYS slot, queue; ARGV run id, lock ms. Compare-and-delete, or hand over."""

_ADMIT = """
local holder = redis.call('GET', KEYS[1])
local waiting = redis.call('LLEN', KEYS[3])
if not holder and waiting == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[5])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  return {1, false, false}
end
if ARGV[4] == 'reject' then return {0, holder or false, false} end
local revived = false
if not holder then
  revived = redis.call('LPOP', KEYS[3])
  holder = revived
  redis.call('SET', KEYS[1], holder, 'PX', ARGV[5])
end
local reply = {0, holder, revived}
if ARGV[4] == 'interrupt' or ARGV[4] == 'rollback' then
  local cancelled = redis.call('LRANGE', KEYS[3], 0, -1)
  redis.call('DEL', KEYS[3])
  for i = 1, #cancelled do reply[#reply + 1] = cancelled[i] end
end
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
return reply
"""
"""KEYS slot, runs, queue; ARGV run id, record (running), record (pending), strategy,
lock ms, ttl ms → {started, holder, revived, cancelled...}. A queue with no holder
means the holder died: its first waiting run takes the slot (`revived`)."""

_HEARTBEAT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


def _text(value: bytes | str | None) -> str | None:
    if value is None or value is False:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRunStore:
    """The store shared by every replica (see the layout at the top of the module)."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        prefix: str,
        lock_seconds: float = 30.0,
        ttl_seconds: float = 3600.0,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._lock_ms = int(lock_seconds * 1000)
        self._ttl_ms = int(ttl_seconds * 1000)
        self._free = redis.register_script(_FREE)
        self._admit = redis.register_script(_ADMIT)
        self._heartbeat = redis.register_script(_HEARTBEAT)

    def _slot(self, thread_id: str) -> str:
        return f"{self._prefix}:slot:{{{thread_id}}}"

    def _runs(self, thread_id: str) -> str:
        return f"{self._prefix}:runs:{{{thread_id}}}"

    def _queue(self, thread_id: str) -> str:
        return f"{self._prefix}:queue:{{{thread_id}}}"

    async def take(self, thread_id: str, run_id: str) -> bool:
        return bool(await self._redis.set(self._slot(thread_id), run_id, nx=True, px=self._lock_ms))

    async def free(self, thread_id: str, run_id: str) -> str | None:
        keys = [self._slot(thread_id), self._queue(thread_id)]
        return _text(await self._free(keys=keys, args=[run_id, self._lock_ms]))

    async def admit(self, record: RunRecord) -> Admission:
        thread_id = record.thread_id
        reply = await self._admit(
            keys=[self._slot(thread_id), self._runs(thread_id), self._queue(thread_id)],
            args=[
                record.run_id,
                replace(record, status="running").to_json(),
                replace(record, status="pending").to_json(),
                record.multitask_strategy,
                self._lock_ms,
                self._ttl_ms,
            ],
        )
        started, holder, revived, *cancelled = reply
        return Admission(
            started=bool(started),
            holder=_text(holder),
            cancelled=tuple(_text(c) or "" for c in cancelled),
            revived=_text(revived),
        )

    async def active(self, thread_id: str) -> str | None:
        return _text(await self._redis.get(self._slot(thread_id)))

    async def pending(self, thread_id: str) -> list[str]:
        return [_text(v) or "" for v in await self._redis.lrange(self._queue(thread_id), 0, -1)]

    async def unqueue(self, thread_id: str, run_id: str) -> bool:
        return bool(await self._redis.lrem(self._queue(thread_id), 0, run_id))

    async def get(self, thread_id: str, run_id: str) -> RunRecord | None:
        raw = await self._redis.hget(self._runs(thread_id), run_id)
        return RunRecord.from_json(raw) if raw else None

    async def put(self, record: RunRecord, *, result: Any = None) -> None:
        key = self._runs(record.thread_id)
        fields = {record.run_id: replace(record, updated_at=now()).to_json()}
        if result is not None:
            fields[f"{record.run_id}:result"] = dumps(result)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, self._ttl_ms)
            await pipe.execute()

    async def list(self, thread_id: str) -> list[RunRecord]:
        raw = await self._redis.hgetall(self._runs(thread_id))
        records = [
            RunRecord.from_json(value)
            for name, value in raw.items()
            if not (_text(name) or "").endswith(":result")
        ]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    async def delete(self, thread_id: str, run_id: str) -> None:
        await self._redis.hdel(self._runs(thread_id), run_id, f"{run_id}:result")

    async def delete_thread(self, thread_id: str) -> None:
        await self._redis.delete(self._runs(thread_id))

    async def result(self, thread_id: str, run_id: str) -> Any:
        raw = await self._redis.hget(self._runs(thread_id), f"{run_id}:result")
        return loads(raw) if raw else None

    async def heartbeat(self, thread_id: str, run_id: str) -> bool:
        return bool(
            await self._heartbeat(keys=[self._slot(thread_id)], args=[run_id, self._lock_ms])
        )


class SlotKeeper:
    """Keeps the slots this process holds alive (Redis: every third of their TTL).

    One task per held slot, as the old session lock had; an in-process store needs none.
    """

    def __init__(self, store: RunStore, *, interval_seconds: float | None) -> None:
        self._store = store
        self._interval = interval_seconds
        self._beats: dict[tuple[str, str], asyncio.Task[None]] = {}

    def hold(self, thread_id: str, run_id: str) -> None:
        if self._interval is None:
            return
        key = (thread_id, run_id)
        self._beats[key] = asyncio.create_task(self._beat(thread_id, run_id), name=f"slot-{run_id}")

    async def _beat(self, thread_id: str, run_id: str) -> None:
        assert self._interval is not None
        while True:
            await asyncio.sleep(self._interval)
            try:
                if not await self._store.heartbeat(thread_id, run_id):
                    log.warning("run %s lost the slot of thread %s", run_id, thread_id)
                    return
            except (RedisError, OSError) as exc:
                log.warning("could not extend the slot of thread %s: %s", thread_id, exc)

    async def drop(self, thread_id: str, run_id: str) -> None:
        task = self._beats.pop((thread_id, run_id), None)
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
