"""Turns record the fork branch they belong to: `parent_turn_id`.

Studio's and Agent Chat UI's "edit a message" / "re-run from here" start a run
from an earlier checkpoint, so a thread's turns form a tree, not a list. Each turn
now names the turn before it on its branch: `''` for the first turn of a thread (a
root), the previous turn's `turn_id` otherwise. Rows written before this migration
keep NULL, read as "the previous row of the session in id order": every session
was linear until forks were recorded, so that is what they were.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("parent_turn_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("parent_turn_id")
