"""The documents API and the search tool over real HTTP, on a real SQLite FTS5 index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_server.persistence.db import create_engine
from agent_server.persistence.documents import DocumentStore, fts_query

DOCS = [
    {
        "title": "LangGraph checkpoints",
        "content": (
            "LangGraph saves the state of every thread in a checkpointer after each step. "
            "Checkpoints let a run resume after a crash and let a conversation continue "
            "across requests; a thread id selects the checkpoints of one conversation."
        ),
        "metadata": {"topic": "agents"},
    },
    {
        "title": "Sourdough baking",
        "content": (
            "Feed the starter the evening before, mix flour and water, rest the dough, "
            "fold it every half hour and bake it hot in a covered pot."
        ),
        "metadata": {"topic": "food"},
    },
    {
        "title": "Tide pools",
        "content": (
            "Rocky shores hold pools of sea water at low tide, home to anemones, crabs "
            "and small fish that survive until the sea returns."
        ),
        "metadata": {"topic": "nature"},
    },
]


async def add(client: httpx.AsyncClient, doc: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/api/documents", json=doc)
    assert r.status_code == 201, r.text
    return r.json()


async def chat(client: httpx.AsyncClient, message: str) -> dict[str, Any]:
    r = await client.post("/api/chat/message", json={"message": message})
    assert r.status_code == 200, r.text
    return r.json()


def result_lines(response: str) -> list[str]:
    return [line for line in response.splitlines() if line.startswith("- ")]


# --- documents API -----------------------------------------------------------------------


async def test_create_list_get_delete(client: httpx.AsyncClient) -> None:
    doc = DOCS[0]
    created = await add(client, doc)
    assert created["id"]
    assert created["title"] == doc["title"]
    assert created["chars"] == len(doc["content"])
    assert created["metadata"] == {"topic": "agents"}
    assert created["created_at"]
    assert "content" not in created

    listed = await client.get("/api/documents")
    assert listed.status_code == 200
    documents = listed.json()["documents"]
    assert [d["id"] for d in documents] == [created["id"]]
    assert "content" not in documents[0]
    assert documents[0]["chars"] == len(doc["content"])

    fetched = await client.get(f"/api/documents/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["content"] == doc["content"]
    assert fetched.json()["title"] == doc["title"]

    deleted = await client.delete(f"/api/documents/{created['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""

    for method in ("GET", "DELETE"):
        r = await client.request(method, f"/api/documents/{created['id']}")
        assert r.status_code == 404, (method, r.text)
        error = r.json()["error"]
        assert error["code"] == "document_not_found"
        assert error["request_id"] == r.headers["x-request-id"]
    assert (await client.get("/api/documents")).json()["documents"] == []


async def test_list_is_newest_first_and_paginated(client: httpx.AsyncClient) -> None:
    ids = [(await add(client, doc))["id"] for doc in DOCS]
    page = (await client.get("/api/documents", params={"limit": 2})).json()
    assert page["limit"] == 2 and page["offset"] == 0
    assert [d["id"] for d in page["documents"]] == ids[::-1][:2]
    rest = (await client.get("/api/documents", params={"limit": 2, "offset": 2})).json()
    assert [d["id"] for d in rest["documents"]] == ids[::-1][2:]


@pytest.mark.parametrize(
    "body",
    [
        {"title": "", "content": "x"},
        {"content": "x"},
        {"title": "t"},
        {"title": "t", "content": ""},
        {"title": "t", "content": "x", "extra": 1},
        {"title": "t" * 201, "content": "x"},
        {"title": "t", "content": "x", "metadata": "not an object"},
        {"title": 5, "content": "x"},
    ],
    ids=[
        "empty-title",
        "missing-title",
        "missing-content",
        "empty-content",
        "extra-field",
        "long-title",
        "bad-metadata",
        "title-not-string",
    ],
)
async def test_invalid_document_gets_422_error_shape(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    r = await client.post("/api/documents", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"]
    assert error["request_id"] == r.headers["x-request-id"]
    assert (await client.get("/api/documents")).json()["documents"] == []


# --- the search tool through chat --------------------------------------------------------


async def test_search_names_the_right_document_first(client: httpx.AsyncClient) -> None:
    created = {doc["title"]: await add(client, doc) for doc in DOCS}
    body = await chat(client, "search for LangGraph checkpoints")
    assert body["tools_used"] == ["search"]
    lines = result_lines(body["response"])
    assert lines, body["response"]
    assert lines[0].startswith("- LangGraph checkpoints:")
    assert created["LangGraph checkpoints"]["id"] in lines[0]
    assert not any("Sourdough" in line or "Tide pools" in line for line in lines)

    other = await chat(client, "search for sourdough starter")
    assert result_lines(other["response"])[0].startswith("- Sourdough baking:")


async def test_fts_syntax_in_the_query_does_not_error(client: httpx.AsyncClient) -> None:
    for doc in DOCS:
        await add(client, doc)
    body = await chat(client, "search for what's \"AND* NEAR(-x:")
    assert body["tools_used"] == ["search"]
    assert "couldn't search" not in body["response"]
    assert "failed" not in body["response"]


async def test_deleted_document_is_no_longer_found(client: httpx.AsyncClient) -> None:
    created = [await add(client, doc) for doc in DOCS]
    before = await chat(client, "search for LangGraph checkpoints")
    assert result_lines(before["response"])
    assert (await client.delete(f"/api/documents/{created[0]['id']}")).status_code == 204
    after = await chat(client, "search for LangGraph checkpoints")
    assert after["tools_used"] == ["search"]
    assert "LangGraph checkpoints:" not in after["response"]
    assert created[0]["id"] not in after["response"]
    assert "found nothing" in after["response"]


async def test_search_with_empty_knowledge_base(client: httpx.AsyncClient) -> None:
    body = await chat(client, "search for LangGraph checkpoints")
    assert body["tools_used"] == ["search"]
    assert "found nothing" in body["response"]


# --- DocumentStore directly --------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[DocumentStore]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'kb.db'}")
    yield DocumentStore(engine)
    await engine.dispose()


async def _title_and_passing_mention(store: DocumentStore) -> tuple[str, str]:
    filler = " ".join(f"word{i} garden soil compost seedlings" for i in range(80))
    passing = await store.add(
        "local", "Gardening notes", f"{filler} once I read about kubernetes here. {filler}"
    )
    titled = await store.add("local", "Kubernetes operators", "A guide to running operators.")
    return titled.id, passing.id


async def test_bm25_ranks_a_title_match_above_a_passing_mention(store: DocumentStore) -> None:
    for i in range(5):  # unrelated documents, so the term is rare as in a real corpus
        await store.add("local", f"Boats {i}", "hulls, sails and harbours")
    titled, passing = await _title_and_passing_mention(store)
    hits = await store.search("local", "kubernetes", k=5)
    assert [h.document_id for h in hits] == [titled, passing]
    assert hits[0].score > hits[1].score > 0
    # The long body is cut to a snippet around the match.
    assert "kubernetes" in hits[1].snippet
    assert len(hits[1].snippet) < 400


async def test_scores_keep_the_ranking_visible_in_a_small_knowledge_base(
    store: DocumentStore,
) -> None:
    """When the term occurs in half of the documents or more (any two-document knowledge
    base), FTS5 clamps BM25's IDF to 1e-6, so raw scores are around 1e-6. The tool's
    scores must still say which hit is better ("higher = better"), not all read 0.0."""
    titled, passing = await _title_and_passing_mention(store)
    hits = await store.search("local", "kubernetes", k=5)
    assert [h.document_id for h in hits] == [titled, passing]
    assert hits[0].score > hits[1].score > 0


async def test_search_is_owner_scoped_and_respects_k(store: DocumentStore) -> None:
    for i in range(4):
        await store.add("alice", f"Note {i}", "shared topic: lighthouses")
    assert len(await store.search("alice", "lighthouses", k=2)) == 2
    assert len(await store.search("alice", "lighthouses", k=10)) == 4
    assert await store.search("bob", "lighthouses", k=10) == []


@pytest.mark.parametrize(
    "query",
    ["what's \"AND* NEAR(-x:", "AND", "OR NOT", "*", '"', "title:secret", "a - b", "NEAR(x y)"],
)
async def test_fts_syntax_is_never_passed_through(store: DocumentStore, query: str) -> None:
    await store.add("local", "Syntax", "what and near x title secret a b y or not")
    hits = await store.search("local", query, k=5)
    assert isinstance(hits, list)


@pytest.mark.parametrize("query", ["", "   ", "*** ---", "!?"])
async def test_query_without_words_finds_nothing(store: DocumentStore, query: str) -> None:
    await store.add("local", "Doc", "content")
    assert fts_query(query) is None
    assert await store.search("local", query, k=5) == []


async def test_delete_removes_from_the_index(store: DocumentStore) -> None:
    doc = await store.add("local", "Ephemeral", "temporary lighthouse notes")
    assert [h.document_id for h in await store.search("local", "lighthouse", k=5)] == [doc.id]
    assert await store.delete("bob", doc.id) is False  # other owners cannot delete it
    assert await store.delete("local", doc.id) is True
    assert await store.search("local", "lighthouse", k=5) == []
    assert await store.delete("local", doc.id) is False
