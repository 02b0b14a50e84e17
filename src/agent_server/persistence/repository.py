"""Reads and writes of the durable transcript (tables in `models.py`).

Returns plain frozen dataclasses, never ORM rows, so nothing above this layer
can lazily trigger I/O or depend on SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agent_server.persistence import migrate
from agent_server.persistence.models import SessionRow, TurnRow, utcnow


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    owner: str
    title: str | None
    created_at: datetime
    last_active_at: datetime
    turn_count: int = 0


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One completed turn, as the persist node writes it and history reads it."""

    turn_id: str
    session_id: str
    user_message: str
    assistant_message: str
    tools_used: list[str] = field(default_factory=list)
    model_used: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    degraded: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


def _session_info(row: SessionRow, turn_count: int = 0) -> SessionInfo:
    return SessionInfo(
        id=row.id,
        owner=row.owner,
        title=row.title,
        created_at=_aware(row.created_at),
        last_active_at=_aware(row.last_active_at),
        turn_count=turn_count,
    )


def _turn_record(row: TurnRow) -> TurnRecord:
    return TurnRecord(
        turn_id=row.turn_id,
        session_id=row.session_id,
        user_message=row.user_message,
        assistant_message=row.assistant_message,
        tools_used=list(row.tools_used or []),
        model_used=row.model_used,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cost_usd=row.cost_usd,
        latency_ms=row.latency_ms,
        fallbacks=list(row.fallbacks or []),
        degraded=row.degraded,
        metadata=dict(row.metadata_ or {}),
        created_at=_aware(row.created_at),
    )


class TranscriptRepository:
    """Sessions and turns in SQL, scoped by owner."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        self._statements: tuple[Any, Any, Any] | None = None

    async def create_schema(self) -> None:
        """Apply the migrations. Idempotent; also run lazily on first use so the graph
        works when loaded on its own (LangGraph Studio) without the app."""
        async with self._schema_lock:
            if self._schema_ready:
                return
            await migrate.upgrade(self._engine)
            self._schema_ready = True

    def mark_schema_ready(self) -> None:
        """The app checked or applied the migrations itself; skip the lazy upgrade."""
        self._schema_ready = True

    async def _ready(self) -> None:
        if not self._schema_ready:
            await self.create_schema()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        await self._ready()
        async with self._sessions() as session:
            yield session

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # --- sessions -------------------------------------------------------------

    async def create_session(
        self, owner: str, *, title: str | None = None, session_id: str | None = None
    ) -> SessionInfo:
        now = utcnow()
        row = SessionRow(
            id=session_id or str(uuid.uuid4()),
            owner=owner,
            title=title,
            created_at=now,
            last_active_at=now,
        )
        async with self._session() as session, session.begin():
            session.add(row)
        return _session_info(row)

    async def get_session(self, session_id: str, owner: str) -> SessionInfo | None:
        """On every message to an existing session, so it is a Core statement on a
        plain connection: the ORM's session, identity map and row objects cost more
        than the query itself here."""
        await self._ready()
        async with self._engine.connect() as conn:
            row = (await conn.execute(_GET_SESSION, {"id": session_id, "owner": owner})).first()
        if row is None:
            return None
        return SessionInfo(
            id=row.id,
            owner=row.owner,
            title=row.title,
            created_at=_aware(row.created_at),
            last_active_at=_aware(row.last_active_at),
        )

    async def list_sessions(self, owner: str, *, limit: int, offset: int) -> list[SessionInfo]:
        turn_counts = (
            select(TurnRow.session_id, func.count().label("n"))
            .group_by(TurnRow.session_id)
            .subquery()
        )
        stmt = (
            select(SessionRow, func.coalesce(turn_counts.c.n, 0))
            .outerjoin(turn_counts, turn_counts.c.session_id == SessionRow.id)
            .where(SessionRow.owner == owner)
            .order_by(SessionRow.last_active_at.desc(), SessionRow.id)
            .limit(limit)
            .offset(offset)
        )
        async with self._session() as session:
            rows = (await session.execute(stmt)).all()
        return [_session_info(row, count) for row, count in rows]

    async def delete_session(self, session_id: str, owner: str) -> bool:
        async with self._session() as session, session.begin():
            owned = select(SessionRow.id).where(
                SessionRow.id == session_id, SessionRow.owner == owner
            )
            if (await session.execute(owned)).first() is None:
                return False
            await session.execute(delete(TurnRow).where(TurnRow.session_id == session_id))
            await session.execute(delete(SessionRow).where(SessionRow.id == session_id))
        return True

    # --- turns ----------------------------------------------------------------

    async def record_turn(self, turn: TurnRecord, *, owner: str) -> bool:
        """Insert the turn unless its `turn_id` is already stored.

        Returns whether a row was written. The session row is created on the fly
        for threads that did not come through our API (LangGraph Studio), and its
        `last_active_at` and title are updated in the same transaction. The three
        statements are built once (`_turn_statements`) and get their values as
        parameters, so SQLAlchemy compiles and caches them once instead of
        computing a cache key from inline values on every turn.
        """
        now = utcnow()
        title = _title_from(turn.user_message)
        upsert_session, insert_turn, touch_session = self._turn_statements()
        await self._ready()
        async with self._engine.begin() as conn:
            await conn.execute(
                upsert_session,
                {
                    "id": turn.session_id,
                    "owner": owner,
                    "title": title,
                    "created_at": now,
                    "last_active_at": now,
                },
            )
            result = await conn.execute(
                insert_turn,
                {
                    "turn_id": turn.turn_id,
                    "session_id": turn.session_id,
                    "user_message": turn.user_message,
                    "assistant_message": turn.assistant_message,
                    "tools_used": turn.tools_used,
                    "model_used": turn.model_used,
                    "input_tokens": turn.input_tokens,
                    "output_tokens": turn.output_tokens,
                    "cost_usd": turn.cost_usd,
                    "latency_ms": turn.latency_ms,
                    "fallbacks": turn.fallbacks,
                    "degraded": turn.degraded,
                    "metadata": turn.metadata,
                    "created_at": now,
                },
            )
            inserted = bool(result.rowcount)
            if inserted:
                await conn.execute(
                    touch_session, {"sid": turn.session_id, "now": now, "title": title}
                )
        return inserted

    def _turn_statements(self) -> tuple[Any, Any, Any]:
        if self._statements is None:
            dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
            sessions, turns = SessionRow.__table__, TurnRow.__table__
            self._statements = (
                dialect.insert(sessions).on_conflict_do_nothing(index_elements=["id"]),
                dialect.insert(turns).on_conflict_do_nothing(index_elements=["turn_id"]),
                sessions.update()
                .where(sessions.c.id == bindparam("sid"))
                .values(
                    last_active_at=bindparam("now"),
                    title=func.coalesce(sessions.c.title, bindparam("title")),
                ),
            )
        return self._statements

    async def list_turns(self, session_id: str, *, limit: int, offset: int = 0) -> list[TurnRecord]:
        """Oldest first, so a client can render the conversation as returned."""
        stmt = (
            select(TurnRow)
            .where(TurnRow.session_id == session_id)
            .order_by(TurnRow.id)
            .limit(limit)
            .offset(offset)
        )
        async with self._session() as session:
            rows = (await session.scalars(stmt)).all()
        return [_turn_record(row) for row in rows]

    async def recent_turns(self, session_id: str, *, limit: int) -> list[TurnRecord]:
        """The newest `limit` turns, oldest first: enough to rebuild model context."""
        stmt = (
            select(TurnRow)
            .where(TurnRow.session_id == session_id)
            .order_by(TurnRow.id.desc())
            .limit(limit)
        )
        async with self._session() as session:
            rows = (await session.scalars(stmt)).all()
        return [_turn_record(row) for row in reversed(rows)]


_SESSIONS = SessionRow.__table__
_GET_SESSION = select(_SESSIONS).where(
    _SESSIONS.c.id == bindparam("id"), _SESSIONS.c.owner == bindparam("owner")
)
"""Built once with bound parameters, so SQLAlchemy compiles and caches it once."""


def _title_from(message: str, width: int = 80) -> str:
    """A session's default title: its first message, on one line, shortened."""
    line = " ".join(message.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"
