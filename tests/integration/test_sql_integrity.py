"""Issue 16: the SQL side of a turn — outages, ghost turns, NUL characters.

Real PostgreSQL (a throwaway database on the machine's server, reached through a
TCP proxy the test takes down and brings back), real SQLite files, the fake
OpenAI-compatible upstream (it records what the model was sent).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from agent_server.api.app import create_app
from agent_server.config import Settings
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, fake_upstream, text
from tests.support.postgres import temporary_database
from tests.support.servers import serve_in_thread
from tests.support.tcp_proxy import TcpProxy, tcp_proxy


def _sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1].strip())
        if name is not None and data is not None:
            events.append((name, data))
    return events


def _sent_texts(fake: FakeUpstream) -> list[str]:
    """The message texts of the last request the model got."""
    return [str(m.get("content")) for m in fake.requests[-1].body["messages"]]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as fake:
        yield fake


def _settings(tmp_path: Path, fake: FakeUpstream, **overrides: Any) -> Settings:
    return make_settings(
        tmp_path,
        openrouter_api_key="sk-test",
        openrouter_base_url=fake.base_url,
        agent_models=["m1"],
        **overrides,
    )


@pytest.fixture
async def postgres_via_proxy() -> AsyncIterator[tuple[str, TcpProxy]]:
    """A throwaway PostgreSQL database and a proxy to it: (URL through the proxy, proxy)."""
    async with temporary_database() as url:
        parts = urlsplit(url)
        with tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
            netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
            yield urlunsplit(parts._replace(netloc=netloc)), proxy


# --- items 4 and 11: the database goes away mid-turn ----------------------------------------


async def test_a_database_outage_mid_turn_is_a_503_and_leaves_no_ghost_turn(
    tmp_path: Path,
    upstream: FakeUpstream,
    postgres_via_proxy: tuple[str, TcpProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, proxy = postgres_via_proxy
    settings = _settings(tmp_path, upstream, database_url=url)
    with serve_in_thread(create_app(settings)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            upstream.always("m1", text("first answer"))
            first = await client.post("/api/chat/message", json={"message": "first question"})
            assert first.status_code == 200
            session_id = first.json()["session_id"]

            caplog.clear()
            for path, question in (
                ("/api/chat/message", "ghost question one"),
                ("/api/chat/message/stream", "ghost question two"),
            ):
                upstream.always("m1", text("ghost answer", first_token_latency=0.8))
                body = {"message": question, "session_id": session_id}
                request = asyncio.create_task(client.post(path, json=body))
                await asyncio.sleep(0.4)  # the model is answering; then SQL goes away
                proxy.down()
                response = await request
                proxy.up()
                if path.endswith("stream"):
                    assert response.status_code == 200
                    assert _sse(response.text)[-1] == (
                        "error",
                        {
                            "code": "store_unavailable",
                            "message": "the database is unreachable; retry shortly",
                        },
                    )
                else:
                    assert response.status_code == 503, response.text
                    assert response.json()["error"]["code"] == "store_unavailable"
                    assert int(response.headers["retry-after"]) >= 1
            # An outage is a warning, not an ERROR with a stack trace.
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
                r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
            ]

            upstream.always("m1", text("third answer"))
            third = await client.post(
                "/api/chat/message", json={"message": "third question", "session_id": session_id}
            )
            assert third.status_code == 200
            sent = _sent_texts(upstream)
            assert "first question" in sent and "first answer" in sent
            assert not [t for t in sent if "ghost" in t], sent

            history = (await client.get(f"/api/chat/history/{session_id}")).json()
            assert [t["user_message"] for t in history["turns"]] == [
                "first question",
                "third question",
            ]

            # A database that is down before the turn starts: 503 too, not 500.
            proxy.down()
            try:
                listing = await client.get("/api/chat/sessions")
                message = await client.post(
                    "/api/chat/message", json={"message": "x", "session_id": session_id}
                )
            finally:
                proxy.up()
            for response in (listing, message):
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "store_unavailable"
                assert "retry-after" in response.headers


# --- item 8: NUL characters, the same on PostgreSQL and SQLite ------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'nul.db'}"
        return
    async with temporary_database() as url:
        yield url


async def test_nul_characters_are_refused_at_the_edge_and_stored_safely(
    tmp_path: Path, upstream: FakeUpstream, database_url: str
) -> None:
    settings = _settings(tmp_path, upstream, database_url=database_url)
    with serve_in_thread(create_app(settings)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            upstream.always("m1", text("an answer with a \x00 in it"))
            ok = await client.post("/api/chat/message", json={"message": "hello"})
            assert ok.status_code == 200, ok.text
            session_id = ok.json()["session_id"]

            refused = [
                await client.post("/api/chat/message", json={"message": "a\x00b"}),
                await client.post(
                    "/api/chat/message/stream",
                    json={"message": "hi", "session_id": f"{session_id}\x00"},
                ),
                await client.post("/api/chat/message", json={"message": "hi", "model": "m\x00"}),
                await client.post("/api/chat/session", json={"title": "t\x00"}),
            ]
            for response in refused:
                assert response.status_code == 422, (response.request.url, response.text)
                assert response.json()["error"]["code"] == "validation_error"
            assert len(upstream.requests) == 1  # no refused request reached the model

            # Ids in a path that can never exist are not found, like unknown ones (and
            # like document ids), without a database error on PostgreSQL.
            not_found = [
                await client.get(f"/api/chat/history/{session_id}%00"),
                await client.delete(f"/api/chat/session/{session_id}%00"),
                await client.get("/api/chat/history/%00"),
                await client.get(f"/api/chat/history/{'x' * 65}"),
                await client.get("/api/chat/history/no-such-session"),
                await client.get("/api/documents/%00"),
            ]
            for response in not_found:
                assert response.status_code == 404, (response.request.url, response.text)
            assert len(upstream.requests) == 1

            # The model's NUL was stored as U+FFFD, on both databases alike.
            history = (await client.get(f"/api/chat/history/{session_id}")).json()
            assert history["turns"][0]["response"] == "an answer with a \ufffd in it"
