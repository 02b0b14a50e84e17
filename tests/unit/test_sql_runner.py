"""SQLite work runs as one hop to one worker thread, in a transaction for writes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from agent_server.persistence.db import ThreadSqlRunner, create_engine, sql_runner


@pytest.fixture
async def runner(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    runner = sql_runner(engine)
    assert isinstance(runner, ThreadSqlRunner)
    await runner.write(lambda conn: conn.execute(text("CREATE TABLE t (v INTEGER)")))
    yield runner
    await runner.close()
    await engine.dispose()


def values(conn: Connection) -> list[int]:
    return [row.v for row in conn.execute(text("SELECT v FROM t ORDER BY v"))]


async def test_a_failed_write_leaves_nothing_behind(runner: ThreadSqlRunner) -> None:
    def insert_then_fail(conn: Connection) -> None:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await runner.write(insert_then_fail)
    assert await runner.read(values) == []
    await runner.write(lambda conn: conn.execute(text("INSERT INTO t VALUES (2), (3)")))
    assert await runner.read(values) == [2, 3]


async def test_work_runs_off_the_event_loop_thread_always_the_same_one(
    runner: ThreadSqlRunner,
) -> None:
    seen = {await runner.read(lambda _conn: threading.get_ident()) for _ in range(5)}
    assert len(seen) == 1 and threading.get_ident() not in seen


async def test_pragmas_apply_to_its_connection(runner: ThreadSqlRunner) -> None:
    mode = await runner.read(lambda conn: conn.execute(text("PRAGMA journal_mode")).scalar())
    assert mode == "wal"
