"""Shared fixtures: settings on temp files, a live server over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from agent_server.api.app import create_app
from agent_server.config import Settings
from tests.support.servers import serve_in_thread

UNREACHABLE_URL = "http://127.0.0.1:9/unreachable"
"""Port 9 (discard) is closed on test machines: connecting fails at once, offline."""


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings isolated in `tmp_path`; never reads the developer's `.env`, never
    points a tool at the internet."""
    values: dict[str, object] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}",
        "checkpoint_db_path": tmp_path / "checkpoints.db",
        "knowledge_db_path": tmp_path / "knowledge.db",
        "openrouter_api_key": None,
        "redis_url": None,
        "weather_geocoding_url": UNREACHABLE_URL,
        "weather_forecast_url": UNREACHABLE_URL,
        "weather_timeout_seconds": 2.0,
        "knowledge_seed": False,  # tests start from an empty knowledge base unless they ask
        "sse_ping_seconds": 1.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def live_url(settings: Settings) -> Iterator[str]:
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
async def client(live_url: str) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=live_url, timeout=30) as http:
        yield http


ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-fedcba9876543210"
"""The two API keys (two tenants) of the `keyed` server."""


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, agent_api_keys=[ALICE, BOB])


@pytest.fixture
async def keyed(keyed_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A live server that requires one of the keys ALICE or BOB on /api."""
    with serve_in_thread(create_app(keyed_settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client
