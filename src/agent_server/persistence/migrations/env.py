"""Alembic environment: runs on the connection `migrate.py` hands it (async engines
included, via `run_sync`), or on `sqlalchemy.url` when alembic is run by hand."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from agent_server.persistence.models import Base

config = context.config
target_metadata = Base.metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    # By hand: `alembic -x` style use with a sync URL (sqlite:///..., postgresql+psycopg://...).
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        run(conn)
