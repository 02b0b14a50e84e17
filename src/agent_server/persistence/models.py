"""SQL schema of the durable transcript.

Tables
------
sessions  one row per conversation (= LangGraph thread). `owner` is the
          principal that created it; every read filters on it. `metadata` is
          the thread's metadata (JSONB on PostgreSQL, for `@>` containment);
          `status`/`error` what the last run left (`idle`, `interrupted`,
          `error`; `busy` lives in the run store, never here).
api_keys  API keys, stored as SHA-256 hashes (never the key): name, times,
          revoked flag. The principal of a key is `key:<id>`.
turns     one row per completed turn: the user's message, the final answer and
          the turn's accounting. `turn_id` is unique and derived from the run
          (the id of the turn's HumanMessage), which is what makes the persist
          node idempotent: a retried or resumed run inserts nothing new.
          `parent_turn_id` is the turn before it on its fork branch (`''` for
          the first, NULL for rows older than migration 0003; `branches.py`).

SQL is the source of truth for history; checkpoints are hot state only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    title: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_active_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSON().with_variant(postgresql.JSONB(), "postgresql"), default=dict
    )
    status: Mapped[str] = mapped_column(String(16), default="idle")
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        # GIN for `metadata @> …` (thread search) on PostgreSQL; a plain (unused)
        # index on SQLite, where Alembic's model comparison would otherwise differ.
        Index("ix_sessions_metadata", "metadata", postgresql_using="gin"),
    )


class TurnRow(Base):
    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[str] = mapped_column(String(64), unique=True)
    parent_turn_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    session_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    user_message: Mapped[str] = mapped_column(Text)
    assistant_message: Mapped[str] = mapped_column(Text)
    tools_used: Mapped[list[str]] = mapped_column(JSON, default=list)
    model_used: Mapped[str | None] = mapped_column(String(200))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    fallbacks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
