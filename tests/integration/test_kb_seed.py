"""Seed documents and `agent-server kb load` (issue 21): real SQLite files, real HTTP, the
real console script in a child process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from agent_server.api.app import create_app
from agent_server.config import Settings
from agent_server.persistence.db import create_engine
from agent_server.persistence.documents import SHARED_OWNER, DocumentStore, seed_documents
from tests.conftest import make_settings
from tests.support.servers import serve_in_thread


def _db_path(settings: Settings) -> str:
    return settings.database_url.split(":///", 1)[1]


def _rows(settings: Settings, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(_db_path(settings)) as conn:
        return conn.execute(query).fetchall()


def _chat(url: str, message: str) -> dict[str, object]:
    response = httpx.post(f"{url}/api/chat/message", json={"message": message}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_seed_documents_are_loaded_once_and_found_by_search(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, knowledge_seed=True)
    seeds = seed_documents()
    assert len(seeds) >= 3

    with serve_in_thread(create_app(settings)) as url:
        body = _chat(url, "search for fallback")
        assert body["tools_used"] == ["search"]
        assert "Configure a model provider and the fallback chain" in str(body["response"])
        korean = _chat(url, "fallback이 뭐야?")
        assert korean["tools_used"] == ["search"]
        assert "검색 결과" in str(korean["response"])
        # Shared, not the caller's own: the owner-scoped list stays empty.
        listed = httpx.get(f"{url}/api/documents", timeout=30).json()
        assert listed["documents"] == []

    rows = _rows(settings, "SELECT owner, metadata FROM kb_documents")
    assert len(rows) == len(seeds)
    assert {owner for owner, _ in rows} == {SHARED_OWNER}
    metadata = [json.loads(str(m)) for _, m in rows]
    assert all(m["seed"] is True and m["source"] == "seed" for m in metadata)
    assert sorted(m["file"] for m in metadata) == [name for name, _ in seeds]

    # A second start on the same files loads nothing again.
    with serve_in_thread(create_app(settings)) as url:
        assert _chat(url, "search for fallback")["tools_used"] == ["search"]
    assert len(_rows(settings, "SELECT id FROM kb_documents")) == len(seeds)
    assert len(_rows(settings, "SELECT name FROM kb_seeds")) == len(seeds)


def test_knowledge_seed_false_starts_empty(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, knowledge_seed=False)
    with serve_in_thread(create_app(settings)) as url:
        assert "found nothing" in str(_chat(url, "search for fallback")["response"])
    assert _rows(settings, "SELECT id FROM kb_documents") == []


async def test_seed_documents_are_searched_for_every_owner(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'kb.db'}")
    try:
        store = DocumentStore(engine)
        assert await store.load_seed_documents() == len(seed_documents())
        assert await store.load_seed_documents() == 0  # once
        for owner in ("local", "key:alice", "env:bob"):
            hits = await store.search(owner, "fallback chain", k=5)
            assert hits and hits[0].title.startswith("Configure a model provider")
        own = await store.add("key:alice", "Alice's note", "a private fallback plan")
        assert own.id in [h.document_id for h in await store.search("key:alice", "plan", k=5)]
        assert await store.search("env:bob", "private plan", k=5) == []
        # A seed cannot be deleted through an owner's API.
        seed_id = (await store.search("local", "fallback chain", k=1))[0].document_id
        assert await store.delete("local", seed_id) is False
    finally:
        await engine.dispose()


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "KNOWLEDGE_", "REDIS_", "OPENROUTER_", "MODELS_"))
    }
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}",
        CHECKPOINT_DB_PATH=str(tmp_path / "checkpoints.db"),
        KNOWLEDGE_DB_PATH=str(tmp_path / "knowledge.db"),
    )
    return subprocess.run(
        [sys.executable, "-m", "agent_server.cli", "kb", "load", *args],
        cwd=tmp_path,  # no .env of the developer's
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_kb_load_adds_markdown_and_text_files(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "runbook.md").write_text(
        "# Lighthouse runbook\n\nRestart the lighthouse beacon with `beacon restart`.\n",
        encoding="utf-8",
    )
    (notes / "tides.txt").write_text("Spring tides follow the new moon.\n", encoding="utf-8")
    (notes / "binary.md").write_bytes(b"\xff\xfe\x00not text")

    done = _cli(tmp_path, str(notes / "runbook.md"), str(notes / "tides.txt"))
    assert done.returncode == 0, done.stderr
    titles = [line.split("  ", 1)[1] for line in done.stdout.splitlines()]
    assert titles == ["Lighthouse runbook", "tides"]

    bad = _cli(tmp_path, str(notes / "binary.md"), str(notes / "missing.md"))
    assert bad.returncode == 1
    assert "cannot read" in bad.stderr and "binary.md" in bad.stderr

    settings = make_settings(tmp_path)  # the same files the CLI wrote
    with serve_in_thread(create_app(settings)) as url:
        body = _chat(url, "search for lighthouse beacon")
        assert body["tools_used"] == ["search"]
        assert "Lighthouse runbook" in str(body["response"])
        assert "tides" in str(_chat(url, "look up spring tides")["response"])
    rows = _rows(settings, "SELECT owner, metadata FROM kb_documents")
    assert {owner for owner, _ in rows} == {SHARED_OWNER}
    assert sorted(json.loads(str(m))["file"] for _, m in rows) == ["runbook.md", "tides.txt"]
    assert all(json.loads(str(m))["source"] == "kb load" for _, m in rows)
