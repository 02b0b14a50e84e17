"""Alembic migrations from empty and from an older revision on SQLite and PostgreSQL, and
a turn on Postgres."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from agent_server.api.app import create_app
from agent_server.persistence import migrate
from agent_server.persistence.db import create_engine
from agent_server.persistence.models import Base, utcnow
from agent_server.persistence.repository import TranscriptRepository, TurnRecord
from tests.conftest import make_settings
from tests.support.postgres import temporary_database
from tests.support.servers import serve_in_thread

REPO_ROOT = Path(__file__).resolve().parents[2]


async def check_upgrade_from_empty(url: str) -> None:
    engine = create_engine(url)
    try:
        assert await migrate.current_revision(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        await migrate.upgrade(engine)  # idempotent
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
        assert diff == [], f"models and migrations disagree: {diff}"
    finally:
        await engine.dispose()


async def test_sqlite_upgrade_from_empty(tmp_path: Path) -> None:
    await check_upgrade_from_empty(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")


async def test_postgres_upgrade_from_empty() -> None:
    async with temporary_database() as url:
        await check_upgrade_from_empty(url)


async def test_turns_are_idempotent_on_postgres() -> None:
    async with temporary_database() as url:
        engine = create_engine(url)
        try:
            repo = TranscriptRepository(engine)
            session = await repo.create_session("alice")
            turn = TurnRecord(
                turn_id="t-1",
                session_id=session.id,
                user_message="hi",
                assistant_message="hello",
                tools_used=["calculator"],
                fallbacks=[{"model": "m1", "reason": "rate_limit"}],
            )
            assert await repo.record_turn(turn, owner="alice") is True
            assert await repo.record_turn(turn, owner="alice") is False
            turns = await repo.list_turns(session.id, limit=10)
            assert [(t.turn_id, t.tools_used, t.fallbacks) for t in turns] == [
                ("t-1", ["calculator"], [{"model": "m1", "reason": "rate_limit"}])
            ]
            assert [s.turn_count for s in await repo.list_sessions("alice", limit=5, offset=0)] == [
                1
            ]
            assert await repo.delete_session(session.id, "alice") is True
            assert await repo.list_turns(session.id, limit=10) == []
        finally:
            await engine.dispose()


async def test_the_app_on_postgres(tmp_path: Path) -> None:
    async with temporary_database() as url:
        settings = make_settings(tmp_path, database_url=url)
        with serve_in_thread(create_app(settings)) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                r = await client.post("/api/chat/message", json={"message": "Calculate 10 * 20"})
                assert r.status_code == 200 and "200" in r.json()["response"]
                sid = r.json()["session_id"]
                history = (await client.get(f"/api/chat/history/{sid}")).json()["turns"]
                assert [t["response"] for t in history] == [r.json()["response"]]
                # Search lives in its own SQLite file when the transcript is Postgres.
                doc = await client.post(
                    "/api/documents", json={"title": "Kiwi", "content": "kiwi birds cannot fly"}
                )
                assert doc.status_code == 201
                found = await client.post(
                    "/api/chat/message", json={"message": "search for kiwi birds"}
                )
                assert "Kiwi" in found.json()["response"]
        assert settings.knowledge_db_path.exists()


async def test_no_auto_migrate_refuses_an_old_schema(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, db_auto_migrate=False)
    app = create_app(settings)
    with pytest.raises(RuntimeError, match="agent-server db upgrade"):
        async with app.router.lifespan_context(app):
            pass
    engine = create_engine(settings.database_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    async with app.router.lifespan_context(app):
        pass


def test_head_revision_constant_is_the_scripts_head() -> None:
    """`HEAD_REVISION` spares a server on a current schema from loading Alembic; a
    new migration script must bump it, or servers would skip the new migration."""
    assert migrate.head_revision() == migrate.HEAD_REVISION


def test_a_server_on_a_current_schema_never_loads_alembic(tmp_path: Path) -> None:
    """Start-up on a migrated database checks the revision with one SELECT; Alembic
    and Mako (10 MB of RSS) stay out of the long-running process. Checked in a fresh
    interpreter: this one has imported Alembic already."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}"
    program = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from agent_server.api.app import create_app
        from tests.conftest import make_settings

        async def main() -> None:
            app = create_app(make_settings(Path({str(tmp_path)!r}), database_url={database_url!r}))
            async with app.router.lifespan_context(app):
                pass

        asyncio.run(main())
        print(sorted(m for m in ("alembic", "mako") if m in sys.modules))
        """
    )

    def start() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", program],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))

    assert start() == ["alembic", "mako"]  # a fresh database is migrated in-process
    assert start() == []  # the second start finds it current


async def test_an_unreachable_database_is_not_taken_for_an_empty_one() -> None:
    """Start-up must fail on a database it cannot reach, not try to migrate it."""
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    try:
        with pytest.raises((OSError, DBAPIError)):
            await migrate.current_revision(engine)
    finally:
        await engine.dispose()


async def check_upgrade_from_0002_keeps_old_turns(url: str) -> None:
    """A transcript written before forks were recorded (revision 0002, no
    `parent_turn_id`) upgrades; its rows read as the linear sessions they were, and
    new turns, forks included, chain onto them."""
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine, "0002")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO sessions (id, owner, title, created_at, last_active_at)"
                    " VALUES ('s-old', 'alice', 'old', :now, :now)"
                ),
                {"now": utcnow()},
            )
            for turn_id in ("old-1", "old-2"):
                await conn.execute(
                    text(
                        "INSERT INTO turns (turn_id, session_id, user_message,"
                        " assistant_message, tools_used, input_tokens, output_tokens,"
                        " cost_usd, latency_ms, fallbacks, degraded, created_at, metadata)"
                        " VALUES (:t, 's-old', :m, 'answer', '[]', 0, 0, 0, 0, '[]',"
                        " false, :now, '{}')"
                    ),
                    {"t": turn_id, "m": turn_id, "now": utcnow()},
                )
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.HEAD_REVISION
        repo = TranscriptRepository(engine)

        async def branch_of(head: str | None) -> list[str]:
            turns = await repo.branch_turns("s-old", head=head, limit=10)
            return [t.turn_id for t in turns]

        old = await repo.list_turns("s-old", limit=10)
        assert [(t.turn_id, t.parent_turn_id) for t in old] == [("old-1", None), ("old-2", None)]
        assert await branch_of(None) == ["old-1", "old-2"]
        for turn_id, parent in (("new-3", "old-2"), ("fork-2", "old-1")):
            record = TurnRecord(
                turn_id=turn_id,
                session_id="s-old",
                user_message=turn_id,
                assistant_message="answer",
                parent_turn_id=parent,
            )
            assert await repo.record_turn(record, owner="alice")
        assert await branch_of("new-3") == ["old-1", "old-2", "new-3"]
        assert await branch_of("fork-2") == ["old-1", "fork-2"]
        assert await branch_of(None) == ["old-1", "fork-2"]  # no checkpoint: the newest
        recent = await repo.recent_turns("s-old", limit=10)
        assert [t.turn_id for t in recent] == ["old-1", "fork-2"]
    finally:
        await engine.dispose()


async def test_sqlite_upgrade_from_0002_keeps_old_turns(tmp_path: Path) -> None:
    await check_upgrade_from_0002_keeps_old_turns(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")


async def test_postgres_upgrade_from_0002_keeps_old_turns() -> None:
    async with temporary_database() as url:
        await check_upgrade_from_0002_keeps_old_turns(url)
