"""Alembic migrations from empty on SQLite and PostgreSQL, and a turn on Postgres."""

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
from sqlalchemy.exc import DBAPIError

from agent_server.api.app import create_app
from agent_server.persistence import migrate
from agent_server.persistence.db import create_engine
from agent_server.persistence.models import Base
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
