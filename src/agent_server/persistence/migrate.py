"""Apply the Alembic migrations of the transcript schema.

One way in for every entry point (app start, `agent-server db upgrade`, the
graph loaded alone by LangGraph Studio). Alembic is synchronous (it reads its
scripts from disk), so the upgrade runs in a worker thread on a *sync* engine
for the same database (sqlite3 / psycopg): no event loop ever blocks on it,
which `langgraph dev` (blockbuster) would reject outright.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


SYNC_DRIVERS = {"sqlite+aiosqlite": "sqlite", "postgresql+asyncpg": "postgresql+psycopg"}


def sync_url(engine: AsyncEngine) -> URL:
    url = engine.url
    return url.set(drivername=SYNC_DRIVERS.get(url.drivername, url.drivername))


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await asyncio.to_thread(_upgrade_sync, sync_url(engine), revision)


def _upgrade_sync(url: URL, revision: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    finally:
        engine.dispose()


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
