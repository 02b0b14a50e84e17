"""The local knowledge base behind the `search` tool: SQLite FTS5 with BM25.

Layout (SQLite only: FTS5 is a SQLite feature, so with Postgres as the
transcript store the knowledge base lives in its own SQLite file):

kb_documents      id, owner, title, content, metadata (JSON text), created_at
kb_documents_fts  FTS5 table over (title, content) with the document id and owner
                  stored UNINDEXED; rows are written and deleted in the same
                  transaction as `kb_documents`, so the two never disagree.
kb_seeds          name (PRIMARY KEY), document_id, loaded_at: which seed documents
                  (the Markdown files of `persistence/seed/`) were loaded, so each is
                  loaded once, on the first start that sees it, by one replica.

Documents of the owner `SHARED_OWNER` (the seed documents, and files loaded with
`agent-server kb load`) are found by every caller's search; listing, reading and
deleting stay owner-scoped.

Ranking is FTS5's built-in `bm25()` with the title weighted above the body;
`snippet()` cuts the matching passage out of long documents.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_server.persistence.models import utcnow

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS kb_documents (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        title TEXT NOT NULL,
        content TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS kb_documents_owner ON kb_documents (owner, created_at)",
    """
    CREATE TABLE IF NOT EXISTS kb_seeds (
        name TEXT PRIMARY KEY,
        document_id TEXT NOT NULL,
        loaded_at TEXT NOT NULL
    )
    """,
    """
    CREATE VIRTUAL TABLE IF NOT EXISTS kb_documents_fts USING fts5(
        title, content, document_id UNINDEXED, owner UNINDEXED,
        tokenize = 'porter unicode61'
    )
    """,
)
TITLE_WEIGHT = 5.0
BODY_WEIGHT = 1.0
MAX_QUERY_TERMS = 32
SNIPPET_TOKENS = 32
_WORD = re.compile(r"\w+", re.UNICODE)

SHARED_OWNER = "*"
"""Owner of documents every caller's search finds; no principal id is ``*`` (they are
``local``, ``env:<hash>`` or ``key:<id>``)."""

SEED_PACKAGE = "agent_server.persistence.seed"
"""Package whose ``*.md`` files are the seed documents about the product itself."""


def document_title(name: str, content: str) -> str:
    """The first Markdown heading, else the file name without its extension."""
    for line in content.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            heading = stripped.lstrip("#").strip()
            if heading:
                return heading[:200]
        elif stripped:
            break
    stem = name.rsplit("/", 1)[-1]
    return (stem.rsplit(".", 1)[0] if "." in stem else stem)[:200] or "Untitled"


def seed_documents() -> list[tuple[str, str]]:
    """(file name, content) of every seed document, in name order."""
    files = resources.files(SEED_PACKAGE)
    return sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in files.iterdir()
        if entry.name.endswith(".md")
    )


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    owner: str
    title: str
    content: str
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    document_id: str
    title: str
    snippet: str
    score: float


def fts_query(query: str) -> str | None:
    """Turn free text into a safe FTS5 expression.

    User text is full of FTS5 syntax (`"`, `*`, `-`, `:`, AND/OR/NEAR), so we
    never pass it through: each word becomes a quoted term and terms are OR-ed,
    leaving relevance to BM25. Returns None when there is nothing to search for.
    """
    terms = list(dict.fromkeys(word.lower() for word in _WORD.findall(query)))[:MAX_QUERY_TERMS]
    if not terms:
        return None
    return " OR ".join(f'"{term}"' for term in terms)


class DocumentStore:
    """Owner-scoped documents with full-text search."""

    def __init__(self, engine: AsyncEngine) -> None:
        if engine.dialect.name != "sqlite":
            raise ValueError("the knowledge base needs a SQLite engine (FTS5)")
        self._engine = engine
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    async def create_schema(self) -> None:
        async with self._schema_lock:
            if self._schema_ready:
                return
            async with self._engine.begin() as conn:
                for statement in _SCHEMA:
                    await conn.execute(text(statement))
            self._schema_ready = True

    async def _ready(self) -> None:
        if not self._schema_ready:
            await self.create_schema()

    async def add(
        self, owner: str, title: str, content: str, metadata: dict[str, Any] | None = None
    ) -> Document:
        await self._ready()
        doc = Document(
            id=str(uuid.uuid4()),
            owner=owner,
            title=title,
            content=content,
            metadata=dict(metadata or {}),
            created_at=utcnow(),
        )
        async with self._engine.begin() as conn:
            await _insert(conn, doc)
        return doc

    async def load_seed_documents(self) -> int:
        """Add the seed documents not loaded before (as `SHARED_OWNER`); return how many.

        Each one's `kb_seeds` row is claimed in the same transaction that adds it, so two
        replicas starting together load it once, and a seed deleted by hand from
        `kb_documents` is not brought back.
        """
        await self._ready()
        loaded = 0
        for name, content in seed_documents():
            doc = Document(
                id=str(uuid.uuid4()),
                owner=SHARED_OWNER,
                title=document_title(name, content),
                content=content,
                metadata={"seed": True, "source": "seed", "file": name},
                created_at=utcnow(),
            )
            async with self._engine.begin() as conn:
                claimed = await conn.execute(
                    text(
                        "INSERT OR IGNORE INTO kb_seeds (name, document_id, loaded_at)"
                        " VALUES (:name, :id, :at)"
                    ),
                    {"name": name, "id": doc.id, "at": doc.created_at.isoformat()},
                )
                if claimed.rowcount:
                    await _insert(conn, doc)
                    loaded += 1
        return loaded

    async def get(self, owner: str, document_id: str) -> Document | None:
        await self._ready()
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT id, owner, title, content, metadata, created_at FROM kb_documents"
                        " WHERE id = :id AND owner = :owner"
                    ),
                    {"id": document_id, "owner": owner},
                )
            ).first()
        return _document(row) if row else None

    async def list(self, owner: str, *, limit: int, offset: int) -> list[Document]:
        await self._ready()
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, owner, title, content, metadata, created_at FROM kb_documents"
                        " WHERE owner = :owner ORDER BY created_at DESC, id"
                        " LIMIT :limit OFFSET :offset"
                    ),
                    {"owner": owner, "limit": limit, "offset": offset},
                )
            ).all()
        return [_document(row) for row in rows]

    async def delete(self, owner: str, document_id: str) -> bool:
        await self._ready()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                text("DELETE FROM kb_documents WHERE id = :id AND owner = :owner"),
                {"id": document_id, "owner": owner},
            )
            if not result.rowcount:
                return False
            await conn.execute(
                text("DELETE FROM kb_documents_fts WHERE document_id = :id"), {"id": document_id}
            )
        return True

    async def search(self, owner: str, query: str, *, k: int) -> list[SearchHit]:
        await self._ready()
        expression = fts_query(query)
        if expression is None:
            return []
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT document_id, title,"
                        f" snippet(kb_documents_fts, 1, '', '', '…', {SNIPPET_TOKENS}),"
                        f" bm25(kb_documents_fts, {TITLE_WEIGHT}, {BODY_WEIGHT}) AS rank"
                        " FROM kb_documents_fts"
                        " WHERE kb_documents_fts MATCH :q AND owner IN (:owner, :shared)"
                        " ORDER BY rank LIMIT :k"
                    ),
                    {"q": expression, "owner": owner, "shared": SHARED_OWNER, "k": k},
                )
            ).all()
        # bm25() is "lower is better" and negative; flip it so callers see higher = better.
        # Round to significant digits, not decimals: in a small corpus FTS5 clamps
        # IDF to 1e-6 and fixed decimals would flatten every score to 0.
        return [
            SearchHit(document_id=r[0], title=r[1], snippet=r[2], score=float(f"{-r[3]:.6g}"))
            for r in rows
        ]


async def _insert(conn: Any, doc: Document) -> None:
    await conn.execute(
        text(
            "INSERT INTO kb_documents (id, owner, title, content, metadata, created_at)"
            " VALUES (:id, :owner, :title, :content, :metadata, :created_at)"
        ),
        {
            "id": doc.id,
            "owner": doc.owner,
            "title": doc.title,
            "content": doc.content,
            "metadata": json.dumps(doc.metadata),
            "created_at": doc.created_at.isoformat() if doc.created_at else "",
        },
    )
    await conn.execute(
        text(
            "INSERT INTO kb_documents_fts (title, content, document_id, owner)"
            " VALUES (:title, :content, :id, :owner)"
        ),
        {"title": doc.title, "content": doc.content, "id": doc.id, "owner": doc.owner},
    )


def _document(row: Any) -> Document:
    return Document(
        id=row[0],
        owner=row[1],
        title=row[2],
        content=row[3],
        metadata=json.loads(row[4] or "{}"),
        created_at=datetime.fromisoformat(row[5]) if row[5] else None,
    )
