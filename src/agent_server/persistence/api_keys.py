"""API keys in SQL (table `api_keys` in `models.py`).

Keys are 256-bit random tokens, so a single SHA-256 is enough to store them:
slow password hashes exist to protect *guessable* secrets, and would cost a
bcrypt round on every request for no gain. The plaintext is shown once, at
creation, and never stored or logged.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from agent_server.persistence import migrate
from agent_server.persistence.models import ApiKeyRow, utcnow

KEY_PREFIX = "ask_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool

    @property
    def principal(self) -> str:
        return f"key:{self.id}"


def _info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(row.id, row.name, row.prefix, row.created_at, row.last_used_at, row.revoked)


class ApiKeyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def create_schema(self) -> None:
        await migrate.upgrade(self._engine)

    async def create(self, name: str) -> tuple[ApiKeyInfo, str]:
        """A new key; returns its record and the plaintext (shown once)."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id=uuid.uuid4().hex[:16],
            name=name,
            key_hash=hash_key(key),
            prefix=key[: len(KEY_PREFIX) + 4],
            created_at=utcnow(),
            revoked=False,
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return _info(row), key

    async def list(self) -> list[ApiKeyInfo]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))).all()
        return [_info(row) for row in rows]

    async def revoke(self, id_or_name: str) -> int:
        """Revoke by id, or every key with that name; returns how many."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(ApiKeyRow)
                .where(or_(ApiKeyRow.id == id_or_name, ApiKeyRow.name == id_or_name))
                .where(ApiKeyRow.revoked.is_(False))
                .values(revoked=True)
            )
        return int(result.rowcount or 0)

    async def lookup(self, key: str) -> ApiKeyInfo | None:
        """The active key matching `key`, if any."""
        stmt = select(ApiKeyRow).where(
            ApiKeyRow.key_hash == hash_key(key), ApiKeyRow.revoked.is_(False)
        )
        async with self._sessions() as session:
            row = (await session.scalars(stmt)).first()
        return _info(row) if row else None

    async def count_active(self) -> int:
        stmt = select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked.is_(False))
        async with self._sessions() as session:
            return int((await session.scalar(stmt)) or 0)

    async def touch(self, key_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=utcnow())
            )
