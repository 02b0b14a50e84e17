"""Reads and writes of the durable transcript (tables in `models.py`).

Returns plain frozen dataclasses, never ORM rows, so nothing above this layer
can lazily trigger I/O or depend on SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, and_, bindparam, delete, func, literal, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from agent_server.persistence import branches, migrate
from agent_server.persistence.db import Work, sql_runner
from agent_server.persistence.models import SessionRow, TurnRow, utcnow

T = TypeVar("T")


NUL = "\x00"
NUL_REPLACEMENT = "\ufffd"


def sql_safe(value: T) -> T:
    """`value` with every NUL character replaced by U+FFFD, in strings nested in
    lists and dicts too.

    PostgreSQL text and JSONB cannot hold NUL (asyncpg raises), SQLite can, so the
    same turn would be stored on one and a 500 on the other. The API refuses NUL in
    what clients send (422); this covers what reaches SQL another way (a model's
    answer, a tool result, a thread made through the LangGraph API), the same on
    both databases. The check is one `in` per string: nothing is copied without a NUL.
    """
    if isinstance(value, str):
        return value.replace(NUL, NUL_REPLACEMENT) if NUL in value else value  # type: ignore[return-value]
    if isinstance(value, list):
        return [sql_safe(item) for item in value]  # type: ignore[return-value]
    if isinstance(value, dict):
        return {sql_safe(k): sql_safe(v) for k, v in value.items()}  # type: ignore[return-value]
    return value


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
    metadata: dict[str, Any] = field(default_factory=dict)
    """Thread metadata (LangGraph Platform API), `{}` for a plain REST session."""
    status: str = "idle"
    """What the last run left: `idle`, `interrupted` or `error` (never `busy`)."""
    error: dict[str, Any] | None = None


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
    parent_turn_id: str | None = None
    """The turn before this one on its fork branch: `''` for the first turn of a
    branch, None for a row older than forks (read as the previous row; `branches.py`)."""


def _session_info(row: SessionRow | Row[Any], turn_count: int = 0) -> SessionInfo:
    """From an ORM row or a Core row of the sessions table (same attribute names, but
    the ORM calls the `metadata` column `metadata_`: Declarative reserves the name)."""
    metadata = row.metadata_ if isinstance(row, SessionRow) else row._mapping.get("metadata")
    return SessionInfo(
        id=row.id,
        owner=row.owner,
        title=row.title,
        created_at=_aware(row.created_at),
        last_active_at=_aware(row.last_active_at),
        turn_count=turn_count,
        metadata=dict(metadata or {}),
        status=getattr(row, "status", None) or "idle",
        error=getattr(row, "error", None),
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
        parent_turn_id=row.parent_turn_id,
    )


class TranscriptRepository:
    """Sessions and turns in SQL, scoped by owner.

    Each method is a synchronous function of one connection, run by a `SqlRunner`
    (one worker-thread hop on SQLite, `run_sync` on async drivers), so a call costs
    one hop however many statements it runs.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._runner = sql_runner(engine)
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

    async def close(self) -> None:
        await self._runner.close()

    async def _read(self, work: Work[T]) -> T:
        if not self._schema_ready:
            await self.create_schema()
        return await self._runner.read(work)

    async def _write(self, work: Work[T]) -> T:
        if not self._schema_ready:
            await self.create_schema()
        return await self._runner.write(work)

    async def ping(self) -> None:
        await self._runner.read(lambda conn: conn.execute(text("SELECT 1")).scalar())

    # --- sessions -------------------------------------------------------------

    async def create_session(
        self, owner: str, *, title: str | None = None, session_id: str | None = None
    ) -> SessionInfo:
        now = utcnow()
        title = sql_safe(title)
        values = {
            "id": session_id or str(uuid.uuid4()),
            "owner": owner,
            "title": title,
            "created_at": now,
            "last_active_at": now,
        }
        await self._write(lambda conn: conn.execute(_SESSIONS.insert(), values))
        return SessionInfo(
            id=values["id"], owner=owner, title=title, created_at=now, last_active_at=now
        )

    async def get_session(self, session_id: str, owner: str) -> SessionInfo | None:
        """On every message to an existing session, so it is one Core statement built
        once: the ORM's session and identity map would cost more than the query."""
        params = {"id": session_id, "owner": owner}
        row = await self._read(lambda conn: conn.execute(_GET_SESSION, params).first())
        return None if row is None else _session_info(row)

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

        def work(conn: Connection) -> list[SessionInfo]:
            with Session(conn) as session:
                return [_session_info(row, count) for row, count in session.execute(stmt).all()]

        return await self._read(work)

    async def delete_session(self, session_id: str, owner: str) -> bool:
        def work(conn: Connection) -> bool:
            owned = select(SessionRow.id).where(
                SessionRow.id == session_id, SessionRow.owner == owner
            )
            if conn.execute(owned).first() is None:
                return False
            conn.execute(delete(TurnRow).where(TurnRow.session_id == session_id))
            conn.execute(delete(SessionRow).where(SessionRow.id == session_id))
            return True

        return await self._write(work)

    # --- threads (the same rows, as the LangGraph Platform API sees them) ----

    async def create_thread(
        self, owner: str, thread_id: str, metadata: dict[str, Any]
    ) -> tuple[SessionInfo | None, bool]:
        """Insert the row unless the id is taken. Returns `(row, created)`: the new
        row, or the existing one with `created=False` (None if another owner holds
        the id: the caller must not learn anything about it)."""
        now = utcnow()
        values = {
            "id": thread_id,
            "owner": owner,
            "title": None,
            "created_at": now,
            "last_active_at": now,
            "metadata": sql_safe(metadata),
            "status": "idle",
        }
        insert = self._insert_or_ignore()

        def work(conn: Connection) -> tuple[SessionInfo | None, bool]:
            if conn.execute(insert, values).rowcount:
                return _session_info(conn.execute(_GET_ANY_SESSION, {"id": thread_id}).one()), True
            row = conn.execute(_GET_SESSION, {"id": thread_id, "owner": owner}).first()
            return (None if row is None else _session_info(row)), False

        return await self._write(work)

    def _insert_or_ignore(self) -> Any:
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(_SESSIONS).on_conflict_do_nothing(index_elements=["id"])

    async def search_threads(
        self,
        owner: str,
        *,
        metadata: dict[str, Any] | None = None,
        ids: list[str] | None = None,
        statuses: list[str] | None = None,
        sort_by: str = "updated_at",
        sort_order: str = "desc",
        limit: int = 10,
        offset: int = 0,
    ) -> list[SessionInfo]:
        """The owner's rows whose metadata contains `metadata` (top-level keys, each
        value equal), newest activity first by default. `statuses` filters on the
        stored status; `busy` is not stored, so the caller filters that one."""
        table = _SESSIONS
        where = self._thread_filter(owner, metadata, ids, statuses)
        if where is None:
            return []
        column = _SORT_COLUMNS.get(sort_by, table.c.last_active_at)
        order = column.asc() if sort_order == "asc" else column.desc()
        stmt = select(table).where(*where).order_by(order, table.c.id).limit(limit).offset(offset)
        return await self._read(
            lambda conn: [_session_info(row) for row in conn.execute(stmt).all()]
        )

    async def count_threads(
        self,
        owner: str,
        *,
        metadata: dict[str, Any] | None = None,
        statuses: list[str] | None = None,
    ) -> int:
        """How many rows `search_threads` would find with the same filters."""
        where = self._thread_filter(owner, metadata, None, statuses)
        if where is None:
            return 0
        stmt = select(func.count()).select_from(_SESSIONS).where(*where)
        return await self._read(lambda conn: int(conn.execute(stmt).scalar_one()))

    def _thread_filter(
        self,
        owner: str,
        metadata: dict[str, Any] | None,
        ids: list[str] | None,
        statuses: list[str] | None,
    ) -> list[Any] | None:
        """The WHERE clauses of a thread search; None when no row can match."""
        table = _SESSIONS
        where: list[Any] = [table.c.owner == owner]
        if ids is not None:
            where.append(table.c.id.in_(ids))
        if statuses is not None:
            where.append(table.c.status.in_(statuses))
        if metadata:
            condition = self._metadata_contains(sql_safe(metadata))
            if condition is None:
                return None
            where.append(condition)
        return where

    def _metadata_contains(self, metadata: dict[str, Any]) -> Any:
        """`metadata @> :filter` on PostgreSQL (the GIN index); on SQLite one JSON1
        comparison per key (`json_extract` of the stored and the wanted value, so
        numbers, booleans and strings compare as SQL values, objects as minified JSON
        text). None when no row can match (a key SQLite's JSON path cannot name)."""
        column = _SESSIONS.c.metadata
        if self._engine.dialect.name == "postgresql":
            return column.op("@>")(literal(metadata, type_=postgresql.JSONB()))
        conditions = []
        for key, value in metadata.items():
            if '"' in key:
                return None
            conditions.append(
                func.json_extract(column, f'$."{key}"') == func.json_extract(json.dumps(value), "$")
            )
        return and_(*conditions)

    async def update_thread(
        self,
        thread_id: str,
        owner: str,
        *,
        metadata: dict[str, Any] | None = None,
        status: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> SessionInfo | None:
        """Merge `metadata` into the row's (top-level keys, like the reference), and/or
        set the stored status (`error` is kept only with status `error`). None when
        the owner has no such row. Read and write share one transaction."""
        table = _SESSIONS

        def work(conn: Connection) -> SessionInfo | None:
            row = conn.execute(_GET_SESSION, {"id": thread_id, "owner": owner}).first()
            if row is None:
                return None
            values: dict[str, Any] = {"last_active_at": utcnow()}
            if metadata is not None:
                values["metadata"] = {**(row._mapping["metadata"] or {}), **sql_safe(metadata)}
            if status is not None:
                values["status"] = status
                values["error"] = sql_safe(error) if status == "error" else None
            conn.execute(table.update().where(table.c.id == thread_id).values(**values))
            return _session_info(conn.execute(_GET_ANY_SESSION, {"id": thread_id}).one())

        return await self._write(work)

    # --- turns ----------------------------------------------------------------

    async def record_turn(self, turn: TurnRecord, *, owner: str) -> bool:
        """Insert the turn unless its `turn_id` is already stored.

        Returns whether a row was written. The session row is created on the fly
        (first turns of new sessions, threads that did not come through our API such
        as LangGraph Studio's), and its `last_active_at` and title are updated in the
        same transaction. The three statements are built once (`_turn_statements`)
        and get their values as parameters, so SQLAlchemy compiles and caches them
        once instead of computing a cache key from inline values on every turn.
        """
        now = utcnow()
        title = sql_safe(default_title(turn.user_message))
        upsert_session, insert_turn, touch_session = self._turn_statements()
        session_values = {
            "id": turn.session_id,
            "owner": owner,
            "title": title,
            "created_at": now,
            "last_active_at": now,
        }
        turn_values = {
            "turn_id": turn.turn_id,
            "parent_turn_id": sql_safe(turn.parent_turn_id),
            "session_id": turn.session_id,
            "user_message": sql_safe(turn.user_message),
            "assistant_message": sql_safe(turn.assistant_message),
            "tools_used": sql_safe(turn.tools_used),
            "model_used": sql_safe(turn.model_used),
            "input_tokens": turn.input_tokens,
            "output_tokens": turn.output_tokens,
            "cost_usd": turn.cost_usd,
            "latency_ms": turn.latency_ms,
            "fallbacks": sql_safe(turn.fallbacks),
            "degraded": turn.degraded,
            "metadata": sql_safe(turn.metadata),
            "created_at": now,
        }

        def work(conn: Connection) -> bool:
            conn.execute(upsert_session, session_values)
            inserted = bool(conn.execute(insert_turn, turn_values).rowcount)
            if inserted:
                conn.execute(touch_session, {"sid": turn.session_id, "now": now, "title": title})
            return inserted

        return await self._write(work)

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

    async def get_turn(self, turn_id: str, owner: str) -> TurnRecord | None:
        """One stored turn of a session `owner` owns (an idempotent request's replay)."""
        stmt = (
            select(TurnRow)
            .join(SessionRow, SessionRow.id == TurnRow.session_id)
            .where(TurnRow.turn_id == turn_id, SessionRow.owner == owner)
        )
        found = await self._read(lambda conn: _turn_records(conn, stmt))
        return found[0] if found else None

    async def list_turns(self, session_id: str, *, limit: int, offset: int = 0) -> list[TurnRecord]:
        """Every stored turn, every branch, oldest first."""
        stmt = _turn_page(session_id, limit=limit, offset=offset)
        return await self._read(lambda conn: _turn_records(conn, stmt))

    async def recent_turns(self, session_id: str, *, limit: int) -> list[TurnRecord]:
        """The newest `limit` turns of the newest turn's branch, oldest first: enough
        to rebuild model context, without the turns of branches left by a fork. A
        session that never forked costs one light statement more than a plain
        "newest `limit` rows" (same hop); only the rare lost-hot-state path calls it."""
        newest = (
            select(TurnRow)
            .where(TurnRow.session_id == session_id)
            .order_by(TurnRow.id.desc())
            .limit(limit)
        )

        def work(conn: Connection) -> list[TurnRecord]:
            links = _links(conn, session_id)
            if branches.is_linear(links, None):
                return _turn_records(conn, newest)[::-1]
            wanted = [link.id for link in branches.branch(links, None)[-limit:]]
            return _turn_records(conn, _by_ids(wanted))

        return await self._read(work)

    async def branch_turns(
        self,
        session_id: str,
        *,
        head: str | None,
        as_of: datetime | None = None,
        limit: int,
        offset: int = 0,
    ) -> list[TurnRecord]:
        """The turns of the fork branch ending at `head` (the thread's current last
        turn; None: the newest turn's branch), oldest first, `limit`/`offset` applied
        to the branch. `as_of` is when the state naming `head` was written
        (`branches.choose_head`). A session that never forked costs one light
        statement (id, turn_id, parent, time) more than `list_turns`, in the same hop."""
        page = _turn_page(session_id, limit=limit, offset=offset)

        def work(conn: Connection) -> list[TurnRecord]:
            links = _links(conn, session_id)
            chosen = branches.choose_head(links, head, as_of=as_of)
            if branches.is_linear(links, chosen):
                return _turn_records(conn, page)
            wanted = [link.id for link in branches.branch(links, chosen)[offset : offset + limit]]
            return _turn_records(conn, _by_ids(wanted)) if wanted else []

        return await self._read(work)

    async def newest_turn_id(self, session_id: str, *, other_than: str) -> str | None:
        """The id of the session's newest stored turn other than `other_than` (the
        turn being written, which a retry may have stored already). For the persist
        node's rare case of a state that does not say what came before."""
        stmt = (
            select(TurnRow.turn_id)
            .where(TurnRow.session_id == session_id, TurnRow.turn_id != other_than)
            .order_by(TurnRow.id.desc())
            .limit(1)
        )
        return await self._read(lambda conn: conn.execute(stmt).scalar_one_or_none())


def _links(conn: Connection, session_id: str) -> list[branches.TurnLink]:
    rows = conn.execute(_LINKS, {"sid": session_id}).all()
    return [
        branches.TurnLink(row.id, row.turn_id, row.parent_turn_id, _aware(row.created_at))
        for row in rows
    ]


def _turn_page(session_id: str, *, limit: int, offset: int) -> Any:
    """A session's turns in id order (all branches), one page."""
    return (
        select(TurnRow)
        .where(TurnRow.session_id == session_id)
        .order_by(TurnRow.id)
        .limit(limit)
        .offset(offset)
    )


def _by_ids(ids: list[int]) -> Any:
    return select(TurnRow).where(TurnRow.id.in_(ids)).order_by(TurnRow.id)


def _turn_records(conn: Connection, stmt: Any) -> list[TurnRecord]:
    with Session(conn) as session:
        return [_turn_record(row) for row in session.scalars(stmt).all()]


_SESSIONS = SessionRow.__table__
_TURNS = TurnRow.__table__
_LINKS = (
    select(_TURNS.c.id, _TURNS.c.turn_id, _TURNS.c.parent_turn_id, _TURNS.c.created_at)
    .where(_TURNS.c.session_id == bindparam("sid"))
    .order_by(_TURNS.c.id)
)
"""Where each turn of a session sits in its fork tree (`branches.py`): no text columns."""
_GET_SESSION = select(_SESSIONS).where(
    _SESSIONS.c.id == bindparam("id"), _SESSIONS.c.owner == bindparam("owner")
)
"""Built once with bound parameters, so SQLAlchemy compiles and caches it once."""
_GET_ANY_SESSION = select(_SESSIONS).where(_SESSIONS.c.id == bindparam("id"))
_SORT_COLUMNS = {
    "thread_id": _SESSIONS.c.id,
    "created_at": _SESSIONS.c.created_at,
    "updated_at": _SESSIONS.c.last_active_at,
    "state_updated_at": _SESSIONS.c.last_active_at,
    "status": _SESSIONS.c.status,
}
"""`POST /threads/search`'s `sort_by` values and the columns they order by."""


def default_title(message: str, width: int = 80) -> str:
    """A session's default title: its first message, on one line, shortened."""
    line = " ".join(message.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"
