"""Apply the Alembic migrations of the transcript schema.

One way in for every entry point (app start, `agent-server db upgrade`, the
graph loaded alone by LangGraph Studio). Alembic is synchronous (it reads its
scripts from disk), so the upgrade runs in a worker thread on a *sync* engine
for the same database (sqlite3 / psycopg): no event loop ever blocks on it,
which `langgraph dev` (blockbuster) would reject outright.

Alembic is imported only when there is something to migrate. Whether there is
comes from reading `alembic_version` (if it exists) and comparing with `HEAD_REVISION`:
a server restarted on a current schema never loads Alembic and Mako (10 MB of
RSS, ~0.2 s of start-up, measured), which a long-running process would otherwise
carry for nothing. A test keeps `HEAD_REVISION` equal to the scripts' real head.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import URL, Connection, create_engine, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD_REVISION = "0003"
"""The newest script in migrations/versions: bump it with every new migration."""


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

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
    if revision == "head" and await current_revision(engine) == HEAD_REVISION:
        return
    await asyncio.to_thread(_upgrade_sync, sync_url(engine), revision)


def _upgrade_sync(url: URL, revision: str) -> None:
    from alembic import command

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    finally:
        engine.dispose()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema's revision, None before the first migration. Alembic keeps it as
    the single row of `alembic_version` (one row: we have no branches). A database
    that cannot be reached raises, rather than passing for an empty one."""
    async with engine.connect() as conn:
        return await conn.run_sync(_read_revision)


def _read_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


def head_revision() -> str | None:
    """The scripts' head as Alembic computes it (loads Alembic: CLI and tests only)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
