"""The REST surface as the HTTP tests drive it: a served app with a client, its SSE
events, and what it stored (one copy for the suites that need them)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from agent_server.api.app import create_app
from agent_server.config import Settings
from tests.support.servers import serve_in_thread

STREAM_PATH = "/api/chat/message/stream"


@asynccontextmanager
async def served(
    settings: Settings, *, client_timeout: float = 30
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a real loopback port, and a client on it."""
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=client_timeout) as client:
            yield client


async def sse_events(
    client: httpx.AsyncClient, body: dict[str, Any], path: str = STREAM_PATH
) -> list[tuple[str, Any]]:
    """Every event of one streamed turn, as (event, decoded data)."""
    async with aconnect_sse(client, "POST", path, json=body) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        return [(event.event, json.loads(event.data)) async for event in source.aiter_sse()]


def persisted(settings: Settings) -> list[tuple[str, str, str]]:
    """The stored turns (user, assistant, model), read straight from the SQLite file."""
    path = settings.database_url.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT user_message, assistant_message, model_used FROM turns ORDER BY id"
        ).fetchall()
