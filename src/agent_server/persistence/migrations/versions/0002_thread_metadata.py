"""Sessions become LangGraph Platform threads: metadata, status, last error.

`metadata` is what `POST /threads` and `PATCH /threads/{id}` set and `POST
/threads/search` filters by containment: JSONB on PostgreSQL (so `@>` can use a
GIN index), JSON text on SQLite (filtered with JSON1). `status` and `error` keep
what the last run left behind (`idle`, `interrupted`, `error`); `busy` is never
stored, it is read from the run store's slot for the thread.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

METADATA = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("metadata", METADATA, nullable=False, server_default=sa.text("'{}'"))
        )
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="idle"))
        batch.add_column(sa.Column("error", sa.JSON(), nullable=True))
    op.create_index("ix_sessions_metadata", "sessions", ["metadata"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_sessions_metadata", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("error")
        batch.drop_column("status")
        batch.drop_column("metadata")
