"""`GroupCommit`: many writers' statements in one SQLite transaction, durable on return.

Why: a run on the Agent Protocol writes a checkpoint and its tasks' writes after
every step (the protocol's `durability="async"`, which Studio's history and forks
read), and LangGraph's `AsyncSqliteSaver` gives each write its own transaction: an
`execute`, a `commit` and a cursor close, each a hop to aiosqlite's worker thread
and back. Those hops, not the SQL, were the cost (`bench/README.md`, "The Agent
Protocol surface"). SQLite's WAL file takes one commit of many rows about as fast
as one commit of one row, so the writes that arrive while a commit is under way
wait and go together in the next one: classic group commit.

What a writer gets is unchanged: `submit` returns once its statements are
committed (LangGraph's `sync` durability and the REST path's "stored means
answered" still hold), and an error in that transaction is raised to every writer
in it. Statements keep their order (a later `INSERT OR REPLACE` of the same key
wins, as it would have alone). aiosqlite has no batch API, so this is ours: the
library's `executemany` per run of same-SQL statements, one `commit`.

`defer` is for writes whose caller chose not to wait (a run with
`durability="async"`, see `deferred_writes.py`): they wait in the pending batch for
at most `DEFER_SECONDS`, or until their owner calls `flush(key)` (the end of the
run) or anyone else's commit or read comes first, so a short run's steps go to
disk in one transaction. `settled` is what a reader awaits first: a read then sees
every write accepted before it, deferred or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import aiosqlite

Row = tuple[Any, ...]

DEFER_SECONDS = 0.05
"""The longest a deferred write waits for company: what a crash can lose of a run
still under way, on top of what LangGraph's own `async` durability risks."""


class _Batch:
    """Statements grouped by consecutive SQL text, and the future of their commit."""

    __slots__ = ("deferred", "done", "statements")

    def __init__(self) -> None:
        self.statements: list[tuple[str, list[Row]]] = []
        self.deferred: set[str] = set()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def add(self, sql: str, rows: Iterable[Row]) -> None:
        if self.statements and self.statements[-1][0] == sql:
            self.statements[-1][1].extend(rows)
        else:
            self.statements.append((sql, list(rows)))


class GroupCommit:
    """Owned by one saver; `lock` is the saver's connection lock (every other use of
    the connection holds it, so no statement of theirs lands inside our
    transaction)."""

    def __init__(self, conn: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self._conn = conn
        self._lock = lock
        self._pending: _Batch | None = None
        self._inflight: _Batch | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        # A deferred write's failure, kept for its owner's `flush` (nobody awaited it).
        self._failures: dict[str, BaseException] = {}

    def _add(self, statements: Iterable[tuple[str, Iterable[Row]]]) -> _Batch:
        if self._pending is None:
            self._pending = _Batch()
        batch = self._pending
        for sql, rows in statements:
            batch.add(sql, rows)
        return batch

    def _start(self) -> None:
        if self._pending is not None and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush())

    async def submit(self, statements: Iterable[tuple[str, Iterable[Row]]]) -> None:
        """Commit `statements` with whatever else is waiting; return when committed."""
        batch = self._add(statements)
        self._start()
        # Shielded: a cancelled writer (a cancelled run) must not cancel the commit the
        # other writers in its batch wait for.
        await asyncio.shield(batch.done)

    def defer(self, key: str, statements: Iterable[tuple[str, Iterable[Row]]]) -> None:
        """Queue `statements` for a commit within `DEFER_SECONDS`; `flush(key)` waits
        for them and raises their error."""
        self._add(statements).deferred.add(key)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(DEFER_SECONDS, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._start()

    async def settled(self) -> None:
        """Wait until every write accepted so far is committed or has failed."""
        waiting = [b.done for b in (self._inflight, self._pending) if b is not None]
        if waiting:
            self._start()
            await asyncio.wait(waiting)

    async def flush(self, key: str) -> None:
        """Commit now what is waiting; raise the error of a failed write of `key`'s."""
        await self.settled()
        if (failure := self._failures.pop(key, None)) is not None:
            raise failure

    async def drain(self) -> None:
        """Wait for every submitted batch (closing the connection)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._start()
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while (batch := self._pending) is not None:
            self._pending, self._inflight = None, batch
            try:
                async with self._lock:
                    try:
                        for sql, rows in batch.statements:
                            await self._conn.executemany(sql, rows)
                        await self._conn.commit()
                    except BaseException:
                        await self._conn.rollback()
                        raise
            except BaseException as exc:  # every writer of the batch hears of it
                for key in batch.deferred:
                    self._failures[key] = exc
                if not batch.done.done():
                    batch.done.set_exception(exc)
                    batch.done.exception()  # deferred writers never await it: no warning
                if not isinstance(exc, Exception):
                    raise
            else:
                if not batch.done.done():
                    batch.done.set_result(None)
            finally:
                self._inflight = None
