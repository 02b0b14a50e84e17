"""Run events: what a run emits, numbered, kept for replay, fanned out to every reader.

A client that lost its connection rejoins with the id of the last event it saw and
gets everything after it, then the live events, with no gap and no repeat: the log is
read with one cursor for both (Redis: `XRANGE` after the id, then `XREAD BLOCK` from
the last id read; in-process: an index into the run's list). Ids are
`<milliseconds>-<sequence>` (Redis stream ids; the same shape in-process), strictly
increasing per run, and every run's log ends with an `end` event.

Why not Redis pub/sub plus a list (Aegra): a subscriber that replays the list and then
subscribes loses what was published between the two, and needs its own counter for
ids. A stream entry id is both the order and the replay cursor.

Redis layout:

    <p>:events:{<thread>}:<run>   STREAM  fields `e` (event name), `d` (JSON data);
                                          MAXLEN ~ `max_events`; PEXPIRE `retain`
                                          once the run has ended.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis, RedisCluster

from agent_server.persistence.redis_time import redis_time
from agent_server.runs.serialize import dumps, loads

END = "end"
FROM_START = ("-1", "0", "0-0")
"""`Last-Event-ID` values meaning "replay everything" (useStream sends `-1`)."""
LIVE = "$"
"""Read only events appended from now on."""
MAX_EVENTS = 10_000
"""Events kept per run; a longer run drops its oldest (replay then starts later)."""
LOCAL_LOGS = 1_000
"""Finished runs whose logs an in-process log keeps (oldest forgotten first)."""
CALL_SECONDS = 2.0
"""Redis time of one event-log read beyond its `BLOCK`."""
IDLE_CHECK_SECONDS = 1.0
"""How often a reader with nothing to read asks whether the run is still alive."""

Alive = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class RunEvent:
    id: str
    event: str
    data: Any
    """JSON-able: the surfaces encode it."""


def parse_id(event_id: str) -> tuple[int, int] | None:
    ms, sep, seq = event_id.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit():
        return None
    return int(ms), int(seq)


class EventLog(Protocol):
    async def open(self, thread_id: str, run_id: str) -> None:
        """Make the run's log readable before its first event (a queued run's readers
        wait for it to start)."""
        ...

    async def append(self, thread_id: str, run_id: str, event: str, data: Any) -> str:
        """Add an event; returns its id."""
        ...

    async def close(self, thread_id: str, run_id: str, data: Any) -> str:
        """Append the `end` event and keep the log for replay a while longer."""
        ...

    def read(
        self, thread_id: str, run_id: str, *, after: str | None, alive: Alive
    ) -> AsyncIterator[RunEvent]:
        """Events after `after` (None or `FROM_START`: all; `LIVE`: from now on), then
        live ones, up to and including `end`. Stops early when `alive()` turns False
        while nothing arrives (the writer died), or when the log does not exist."""
        ...

    async def exists(self, thread_id: str, run_id: str) -> bool: ...

    async def delete(self, thread_id: str, run_id: str) -> None: ...


class _Log:
    __slots__ = ("closed", "events", "first_seq", "last_ms", "seq", "wake")

    def __init__(self) -> None:
        self.events: list[RunEvent] = []
        self.first_seq = 0
        """Sequence number of `events[0]` (older ones were dropped past MAX_EVENTS)."""
        self.seq = 0
        self.last_ms = 0
        self.closed = False
        self.wake = asyncio.Event()


class LocalEventLog:
    """The log of a single process: a list per run and an `asyncio.Event` to wake readers."""

    def __init__(self, *, max_events: int = MAX_EVENTS, finished: int = LOCAL_LOGS) -> None:
        self._logs: OrderedDict[str, _Log] = OrderedDict()
        # Closed runs, oldest first: the ones to drop past `finished` without walking
        # every log on each close (that walk was O(logs) per run).
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._max_events = max_events
        self._finished = finished

    def _log(self, run_id: str) -> _Log:
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = _Log()
        return log

    async def open(self, thread_id: str, run_id: str) -> None:
        self._log(run_id)

    async def append(self, thread_id: str, run_id: str, event: str, data: Any) -> str:
        log = self._log(run_id)
        # Ids look like Redis stream ids; the sequence alone orders them.
        log.last_ms = max(log.last_ms, int(time.time() * 1000))
        log.seq += 1
        item = RunEvent(f"{log.last_ms}-{log.seq}", event, data)
        log.events.append(item)
        if len(log.events) > self._max_events:
            drop = len(log.events) - self._max_events
            del log.events[:drop]
            log.first_seq += drop
        log.wake.set()
        log.wake = asyncio.Event()
        return item.id

    async def close(self, thread_id: str, run_id: str, data: Any) -> str:
        event_id = await self.append(thread_id, run_id, END, data)
        self._log(run_id).closed = True
        self._logs.move_to_end(run_id)
        self._closed[run_id] = None
        self._closed.move_to_end(run_id)
        while len(self._closed) > self._finished:
            oldest, _ = self._closed.popitem(last=False)
            self._logs.pop(oldest, None)
        return event_id

    async def exists(self, thread_id: str, run_id: str) -> bool:
        return run_id in self._logs

    async def delete(self, thread_id: str, run_id: str) -> None:
        self._logs.pop(run_id, None)
        self._closed.pop(run_id, None)

    async def read(
        self, thread_id: str, run_id: str, *, after: str | None, alive: Alive
    ) -> AsyncIterator[RunEvent]:
        log = self._logs.get(run_id)
        if log is None:
            return
        if after is None or after in FROM_START:
            seq = 0
        elif after == LIVE:
            seq = log.seq
        else:
            parsed = parse_id(after)
            seq = parsed[1] if parsed else 0
        while True:
            # Event number s sits at index s - 1 - first_seq; `seq` is the last one read.
            for item in log.events[max(0, seq - log.first_seq) :]:
                seq = int(item.id.rpartition("-")[2])
                yield item
                if item.event == END:
                    return
            if log.closed:
                return
            wake = log.wake
            try:
                await asyncio.wait_for(wake.wait(), IDLE_CHECK_SECONDS)
            except TimeoutError:
                if not await alive():
                    return
            if self._logs.get(run_id) is not log:
                return


class RedisEventLog:
    """The log shared by every replica: one Redis stream per run."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        prefix: str,
        retain_seconds: float = 3600.0,
        max_events: int = MAX_EVENTS,
        block_ms: int = 1000,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._retain_ms = int(retain_seconds * 1000)
        self._max_events = max_events
        # Below the client's socket timeout, or a quiet stream would look like a dead Redis.
        self._block_ms = block_ms

    def _key(self, thread_id: str, run_id: str) -> str:
        return f"{self._prefix}:events:{{{thread_id}}}:{run_id}"

    def _call_budget(self) -> AbstractContextManager[object]:
        """A reader follows a run for as long as it lasts: each read gets its own Redis
        budget (its block plus a normal call's), not a share of the request's."""
        return redis_time(self._block_ms / 1000 + CALL_SECONDS)

    async def open(self, thread_id: str, run_id: str) -> None:
        """Nothing to do: `XREAD BLOCK` waits for a stream that does not exist yet."""

    async def append(self, thread_id: str, run_id: str, event: str, data: Any) -> str:
        event_id = await self._redis.xadd(
            self._key(thread_id, run_id),
            {"e": event, "d": dumps(data)},
            maxlen=self._max_events,
            approximate=True,
        )
        return event_id.decode() if isinstance(event_id, bytes) else str(event_id)

    async def close(self, thread_id: str, run_id: str, data: Any) -> str:
        key = self._key(thread_id, run_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"e": END, "d": dumps(data)})
            pipe.pexpire(key, self._retain_ms)
            event_id, _ = await pipe.execute()
        return event_id.decode() if isinstance(event_id, bytes) else str(event_id)

    async def exists(self, thread_id: str, run_id: str) -> bool:
        return bool(await self._redis.exists(self._key(thread_id, run_id)))

    async def delete(self, thread_id: str, run_id: str) -> None:
        await self._redis.delete(self._key(thread_id, run_id))

    @staticmethod
    def _event(entry_id: bytes | str, fields: dict[bytes, bytes]) -> RunEvent:
        event_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        return RunEvent(event_id, fields[b"e"].decode(), loads(fields[b"d"]))

    async def read(
        self, thread_id: str, run_id: str, *, after: str | None, alive: Alive
    ) -> AsyncIterator[RunEvent]:
        key = self._key(thread_id, run_id)
        if after is None or after in FROM_START:
            cursor = "0-0"
        elif after == LIVE:
            with self._call_budget():
                last = await self._redis.xrevrange(key, count=1)
            if not last:
                with self._call_budget():
                    if not await self._redis.exists(key):
                        return
            cursor = self._event(*last[0]).id if last else "0-0"
        else:
            cursor = after if parse_id(after) else "0-0"
        # Replay, then follow: one cursor, so nothing between the two is missed.
        while True:
            with self._call_budget():
                batch = await self._redis.xrange(key, min=f"({cursor}", count=500)
            if not batch:
                break
            for entry in batch:
                item = self._event(*entry)
                cursor = item.id
                yield item
                if item.event == END:
                    return
        while True:
            with self._call_budget():
                reply = await self._redis.xread({key: cursor}, count=500, block=self._block_ms)
            if not reply:
                if not await alive():
                    return
                continue
            for entry in reply[0][1]:
                item = self._event(*entry)
                cursor = item.id
                yield item
                if item.event == END:
                    return
