"""Async SQLAlchemy engine construction.

SQLite needs a few pragmas to behave under concurrent async access (WAL so
readers don't block the writer, a busy timeout instead of instant
`database is locked`, foreign keys so cascades work). They are set on every new
connection here so no caller has to remember them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sqlalchemy import URL, Connection, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


SQLITE_POOL_TIMEOUT_SECONDS = 60


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """Build an async engine; SQLite URLs get the pragmas above and one connection.

    SQLite has one writer at a time; with a pool of connections they contend on
    its sleep-and-retry busy handler, which under load (bench/, c=8) put p99 near
    a second. One connection queues them in order instead: same throughput,
    p99 ~150 ms.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=1,
            max_overflow=0,
            pool_timeout=SQLITE_POOL_TIMEOUT_SECONDS,
        )
    else:
        engine = create_async_engine(url, echo=echo, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


T = TypeVar("T")
Work = Callable[[Connection], T]


class SqlRunner(Protocol):
    """Runs a synchronous function of a `Connection`: `read` on a plain connection,
    `write` in a transaction that commits when the function returns."""

    async def read(self, work: Work[T]) -> T: ...

    async def write(self, work: Work[T]) -> T: ...

    async def close(self) -> None: ...


class ThreadSqlRunner:
    """SQLite through its sync driver, one operation per hop to one worker thread.

    Why not the aiosqlite engine: aiosqlite sends every DB-API call (cursor,
    execute, fetch, close, commit, rollback) to its thread separately, five to ten
    hops per repository call, each a future, a queue put and a loop wake-up. A
    session lookup measured 267 µs of CPU that way and 84 µs as one hop (the query
    itself is ~20 µs). One worker thread and one connection also keep SQLite's
    single writer queueing in order instead of spinning on its busy handler.
    """

    def __init__(self, url: URL) -> None:
        self._engine = sa_create_engine(
            url, pool_size=1, max_overflow=0, pool_timeout=SQLITE_POOL_TIMEOUT_SECONDS
        )
        event.listen(self._engine, "connect", _sqlite_pragmas)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    def _read(self, work: Work[T]) -> T:
        with self._engine.connect() as conn:
            return work(conn)

    def _write(self, work: Work[T]) -> T:
        with self._engine.begin() as conn:
            return work(conn)

    async def read(self, work: Work[T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._read, work)

    async def write(self, work: Work[T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._write, work)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._engine.dispose)
        self._thread.shutdown(wait=False)


class AsyncSqlRunner:
    """Servers with an async driver (asyncpg): the same functions via `run_sync`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def read(self, work: Work[T]) -> T:
        async with self._engine.connect() as conn:
            return await conn.run_sync(work)

    async def write(self, work: Work[T]) -> T:
        async with self._engine.begin() as conn:
            return await conn.run_sync(work)

    async def close(self) -> None:
        """The engine belongs to whoever made it."""


def sql_runner(engine: AsyncEngine) -> SqlRunner:
    if engine.dialect.name == "sqlite":
        return ThreadSqlRunner(engine.url.set(drivername="sqlite"))
    return AsyncSqlRunner(engine)


_SQLSTATE_OUTAGE_CLASSES = ("08", "53", "57")
"""PostgreSQL SQLSTATE classes that mean "the server is not there for us": connection
exception, insufficient resources, operator intervention (shutdown, restart)."""


def is_sql_outage(exc: BaseException) -> bool:
    """The database could not be reached or dropped us (not: our query was wrong).

    Walks the exception and its causes, because each layer wraps differently:
    SQLAlchemy wraps DB-API errors (`OperationalError`, `InterfaceError`,
    `connection_invalidated`), asyncpg raises its own classes or a bare `OSError`
    when the connect fails, and the pool raises its own `TimeoutError`. SQLite's
    `OperationalError` ("database is locked", "unable to open database file") is an
    outage of the file in the same sense.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(
            current, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
        ):
            return True
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        if isinstance(current, OSError) and current.errno is not None:
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in _SQLSTATE_OUTAGE_CLASSES:
            return True
        if (
            type(current).__module__.startswith("asyncpg")
            and "Connection" in type(current).__name__
        ):
            return True
        current = getattr(current, "orig", None) or current.__cause__
    return False
