"""Model health shared through a real Redis: what one replica learns about a chain
entry (or a whole provider), the other shows in `GET /api/models` and honours."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent_server.api.app import create_app
from agent_server.config import Settings
from tests.conftest import make_settings
from tests.integration.test_multi_provider import NOT_SERVED, models_file, reasons
from tests.support.fake_upstream import FakeUpstream, fake_upstream, text
from tests.support.redis import delete_prefix, require_redis, unique_prefix
from tests.support.servers import serve_in_thread


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    url = require_redis()
    prefix = unique_prefix("model-health")
    yield url, prefix
    delete_prefix(url, prefix)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    monkeypatch.setenv("TEST_PROVIDER_A_KEY", "sk-a")
    monkeypatch.setenv("TEST_PROVIDER_B_KEY", "sk-b")
    with fake_upstream() as a, fake_upstream() as b:
        yield a, b


def replica(
    tmp_path: Path, name: str, a: FakeUpstream, b: FakeUpstream, redis: tuple[str, str]
) -> Settings:
    home = tmp_path / name
    home.mkdir()
    return make_settings(
        home,
        models_file=models_file(home, a.base_url, b.base_url),
        redis_url=redis[0],
        redis_key_prefix=redis[1],
        model_timeout_seconds=2.0,
    )


async def test_a_model_found_retired_by_one_replica_is_cooling_on_the_other(
    tmp_path: Path, fakes: tuple[FakeUpstream, FakeUpstream], redis_prefix: tuple[str, str]
) -> None:
    a, b = fakes
    a.always("a1", NOT_SERVED)
    a.always("a2", text("a2 answers"))
    one = replica(tmp_path, "one", a, b, redis_prefix)
    two = replica(tmp_path, "two", a, b, redis_prefix)
    with serve_in_thread(create_app(one)) as url_one, serve_in_thread(create_app(two)) as url_two:
        async with (
            httpx.AsyncClient(base_url=url_one, timeout=30) as first,
            httpx.AsyncClient(base_url=url_two, timeout=30) as second,
        ):
            before = {m["id"]: m for m in (await second.get("/api/models")).json()["models"]}
            assert before["a1"]["status"] == "ok"
            r = await first.post("/api/chat/message", json={"message": "hi", "use_tools": False})
            assert reasons(r.json()) == [("a1", "model_unavailable")]
            after = {m["id"]: m for m in (await second.get("/api/models")).json()["models"]}
            assert after["a1"]["status"] == "cooling_down"
            assert after["a1"]["cooldown_reason"] == "model_unavailable"
            assert after["a1"]["last_failure_reason"] == "model_unavailable"
            assert after["a2"]["status"] == "ok"
            tried = a.models_tried()
            r = await second.post("/api/chat/message", json={"message": "hi", "use_tools": False})
            assert r.json()["response"] == "a2 answers"
            assert a.models_tried()[len(tried) :] == ["a2"]  # a1 never asked by replica two


async def test_a_provider_rejecting_our_key_is_shared_and_never_degraded(
    tmp_path: Path, fakes: tuple[FakeUpstream, FakeUpstream], redis_prefix: tuple[str, str]
) -> None:
    a, b = fakes
    a.api_key = "not-ours"
    b.always("b1", text("beta answers"))
    one = replica(tmp_path, "one", a, b, redis_prefix)
    two = replica(tmp_path, "two", a, b, redis_prefix)
    with serve_in_thread(create_app(one)) as url_one, serve_in_thread(create_app(two)) as url_two:
        async with (
            httpx.AsyncClient(base_url=url_one, timeout=30) as first,
            httpx.AsyncClient(base_url=url_two, timeout=30) as second,
        ):
            r = await first.post("/api/chat/message", json={"message": "hi", "use_tools": False})
            assert reasons(r.json()) == [("a1", "auth"), ("a2", "auth")]
            health = {m["id"]: m for m in (await second.get("/api/models")).json()["models"]}
            assert health["a1"]["status"] == health["a2"]["status"] == "cooling_down"
            assert health["a2"]["cooldown_reason"] == "auth"
            b.always("b1", NOT_SERVED)
            # Every entry out, but none for a rate limit: a clear 502, not a degraded answer.
            r = await second.post("/api/chat/message", json={"message": "hi", "use_tools": False})
            assert r.status_code == 502, r.text
            assert r.json()["error"]["code"] == "upstream_rejected"
            assert a.models_tried() == ["a1"]
