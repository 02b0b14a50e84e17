"""Keys, tenants and limits over real HTTP: nobody reads another's data, nobody floods."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from agent_server.api.app import create_app
from tests.conftest import ALICE, BOB, auth, make_settings
from tests.support.redis import delete_prefix, require_redis, unique_prefix
from tests.support.servers import serve_in_thread


async def test_cross_tenant_matrix(keyed: httpx.AsyncClient) -> None:
    alice = auth(ALICE)
    bob = auth(BOB)
    r = await keyed.post("/api/chat/message", json={"message": "Calculate 2+2"}, headers=alice)
    sid = r.json()["session_id"]
    doc = (
        await keyed.post(
            "/api/documents",
            json={"title": "Alice secret", "content": "zebra migration notes"},
            headers=alice,
        )
    ).json()["id"]

    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/api/chat/history/{sid}", None),
        ("DELETE", f"/api/chat/session/{sid}", None),
        ("POST", "/api/chat/message", {"message": "hi", "session_id": sid}),
        ("POST", "/api/chat/message/stream", {"message": "hi", "session_id": sid}),
        ("GET", f"/api/documents/{doc}", None),
        ("DELETE", f"/api/documents/{doc}", None),
    ]
    for method, path, body in attempts:
        r = await keyed.request(method, path, json=body, headers=bob)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] in ("session_not_found", "document_not_found")
        assert "Calculate" not in r.text and "zebra" not in r.text

    assert (await keyed.get("/api/chat/sessions", headers=bob)).json()["sessions"] == []
    assert (await keyed.get("/api/documents", headers=bob)).json()["documents"] == []
    found = await keyed.post(
        "/api/chat/message", json={"message": "search for zebra migration"}, headers=bob
    )
    assert "Alice secret" not in found.json()["response"]

    # Alice still has everything.
    assert (await keyed.get(f"/api/chat/history/{sid}", headers=alice)).status_code == 200
    assert (await keyed.get(f"/api/documents/{doc}", headers=alice)).status_code == 200
    mine = await keyed.post(
        "/api/chat/message", json={"message": "search for zebra migration"}, headers=alice
    )
    assert "Alice secret" in mine.json()["response"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/chat/session"),
        ("POST", "/api/chat/message"),
        ("POST", "/api/chat/message/stream"),
        ("GET", "/api/chat/sessions"),
        ("GET", "/api/chat/history/x"),
        ("DELETE", "/api/chat/session/x"),
        ("GET", "/api/documents"),
        ("POST", "/api/documents"),
        ("GET", "/api/documents/x"),
        ("DELETE", "/api/documents/x"),
        ("GET", "/api/tools"),
        ("GET", "/api/models"),
    ],
)
@pytest.mark.parametrize("headers", [{}, auth("wrong-key"), {"X-API-Key": "wrong-key"}])
async def test_missing_or_wrong_key_is_401(
    keyed: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> None:
    body = {"message": "hi"} if method == "POST" else None
    r = await keyed.request(method, path, json=body, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


async def test_x_api_key_header_and_open_probes(keyed: httpx.AsyncClient) -> None:
    r = await keyed.get("/api/tools", headers={"X-API-Key": ALICE})
    assert r.status_code == 200
    assert (await keyed.get("/healthz")).status_code == 200
    assert (await keyed.get("/readyz")).status_code == 200


async def test_database_keys_via_cli_and_revocation(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth_cache_seconds=0)
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "CHECKPOINT_DB_PATH": str(settings.checkpoint_db_path),
        "KNOWLEDGE_DB_PATH": str(settings.knowledge_db_path),
    }
    cli = [sys.executable, "-m", "agent_server.cli"]
    created = subprocess.run(
        [*cli, "keys", "create", "--name", "ci-bot"], env=env, capture_output=True, text=True
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("ask_") and len(key) > 40

    listed = subprocess.run([*cli, "keys", "list"], env=env, capture_output=True, text=True)
    assert "ci-bot" in listed.stdout and "active" in listed.stdout
    assert key not in listed.stdout  # never shown again
    with sqlite3.connect(settings.database_url.split(":///", 1)[1]) as conn:
        stored = conn.execute("SELECT key_hash FROM api_keys").fetchone()[0]
    assert key not in stored and len(stored) == 64

    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/api/tools")).status_code == 401  # keys exist now
            assert (await client.get("/api/tools", headers=auth(key))).status_code == 200
            revoked = subprocess.run(
                [*cli, "keys", "revoke", "ci-bot"], env=env, capture_output=True, text=True
            )
            assert revoked.returncode == 0
            assert (await client.get("/api/tools", headers=auth(key))).status_code == 401


def test_refuses_non_loopback_without_keys(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}",
        "CHECKPOINT_DB_PATH": str(tmp_path / "cp.db"),
        "KNOWLEDGE_DB_PATH": str(tmp_path / "kb.db"),
        "AGENT_API_KEYS": "",
        "AUTH_DISABLED": "false",
    }
    result = subprocess.run(
        [sys.executable, "-m", "agent_server.cli", "serve", "--host", "0.0.0.0", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in result.stderr
    assert "AUTH_DISABLED" in result.stderr


async def test_lifespan_refuses_too(tmp_path: Path) -> None:
    """Running the app under any ASGI server applies the same rule."""
    from agent_server.api.auth import UnsafeConfiguration

    app = create_app(make_settings(tmp_path, host="0.0.0.0"))
    with pytest.raises(UnsafeConfiguration):
        async with app.router.lifespan_context(app):
            pass


async def test_rate_limit_per_principal(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, agent_api_keys=[ALICE, BOB], rate_limit_per_minute=3)
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            codes = [
                (
                    await client.post(
                        "/api/chat/message", json={"message": "hi"}, headers=auth(ALICE)
                    )
                ).status_code
                for _ in range(3)
            ]
            limited = await client.post(
                "/api/chat/message", json={"message": "hi"}, headers=auth(ALICE)
            )
            other = await client.post(
                "/api/chat/message", json={"message": "hi"}, headers=auth(BOB)
            )
            # Reads are not limited.
            reads = await client.get("/api/chat/sessions", headers=auth(ALICE))
    assert codes == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert other.status_code == 200
    assert reads.status_code == 200


async def test_rate_limit_shared_through_redis(tmp_path: Path) -> None:
    redis_url = require_redis()
    prefix = unique_prefix("limits")
    try:
        settings = [
            make_settings(
                tmp_path / name,
                agent_api_keys=[ALICE],
                rate_limit_per_minute=2,
                redis_url=redis_url,
                redis_key_prefix=prefix,
            )
            for name in ("one", "two")
        ]
        for s in settings:
            s.checkpoint_db_path.parent.mkdir(parents=True, exist_ok=True)
        with (
            serve_in_thread(create_app(settings[0])) as one,
            serve_in_thread(create_app(settings[1])) as two,
        ):
            async with httpx.AsyncClient(timeout=30, headers=auth(ALICE)) as client:
                statuses = [
                    (
                        await client.post(f"{base}/api/chat/message", json={"message": "hi"})
                    ).status_code
                    for base in (one, two, one)
                ]
        assert statuses == [200, 200, 429]
    finally:
        delete_prefix(redis_url, prefix)


async def test_daily_token_budget(tmp_path: Path) -> None:
    """A turn reserves prompt estimate + max_tokens (83 here) and is charged what it
    really used (over 100), so the next one no longer fits."""
    settings = make_settings(tmp_path, agent_api_keys=[ALICE, BOB], daily_token_budget=100)
    body = {"message": "hello", "max_tokens": 20}
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            first = await client.post("/api/chat/message", json=body, headers=auth(ALICE))
            assert first.json()["usage"]["total_tokens"] > 100
            spent = await client.post("/api/chat/message", json=body, headers=auth(ALICE))
            other = await client.post("/api/chat/message", json=body, headers=auth(BOB))
    assert spent.status_code == 429
    assert spent.json()["error"]["code"] == "budget_exceeded"
    assert int(spent.headers["retry-after"]) > 3600
    assert other.status_code == 200


async def test_redis_lock_one_run_per_session_and_released(tmp_path: Path) -> None:
    """Two simultaneous messages on one session: exactly one 200 and one 409,
    the lock free afterwards, also after a client disconnect."""
    from tests.support.weather_stub import weather_stub

    redis_url = require_redis()
    prefix = unique_prefix("locks")
    try:
        with weather_stub(delay_seconds=1.0) as stub:
            settings = make_settings(
                tmp_path,
                redis_url=redis_url,
                redis_key_prefix=prefix,
                weather_geocoding_url=stub.geocoding_url,
                weather_forecast_url=stub.forecast_url,
                weather_cache_seconds=0,
            )
            with serve_in_thread(create_app(settings)) as url:
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                    sid = (await client.post("/api/chat/session")).json()["session_id"]
                    body = {"message": "weather in Seoul", "session_id": sid}
                    results = await asyncio.gather(
                        client.post("/api/chat/message", json=body),
                        client.post("/api/chat/message", json=body),
                    )
                    assert sorted(r.status_code for r in results) == [200, 409]
                    assert (await client.post("/api/chat/message", json=body)).status_code == 200

                    async with aconnect_sse(
                        client, "POST", "/api/chat/message/stream", json=body
                    ) as source:
                        async for event in source.aiter_sse():
                            if event.event == "tool_start":
                                break
                    for _ in range(100):
                        again = await client.post("/api/chat/message", json=body)
                        if again.status_code != 409:
                            break
                        await asyncio.sleep(0.05)
                    assert again.status_code == 200
    finally:
        delete_prefix(redis_url, prefix)


async def test_request_limits(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_body_bytes=4096)
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            big = await client.post(
                "/api/documents", json={"title": "big", "content": "x" * 10_000}
            )
            assert big.status_code == 413
            assert big.json()["error"]["code"] == "payload_too_large"

            async def chunked() -> AsyncIterator[bytes]:  # no Content-Length
                yield b'{"title": "big", "content": "'
                for _ in range(10):
                    yield b"x" * 1000
                yield b'"}'

            streamed = await client.post(
                "/api/documents", content=chunked(), headers={"content-type": "application/json"}
            )
            assert streamed.status_code == 413
            assert streamed.json()["error"]["code"] == "payload_too_large"
            assert (await client.get("/api/documents")).json()["documents"] == []
            many_tools = await client.post(
                "/api/chat/message", json={"message": "hi", "tools": ["calculator"] * 17}
            )
            assert many_tools.status_code == 422


async def test_stream_duration_limit(tmp_path: Path) -> None:
    from tests.support.weather_stub import weather_stub

    with weather_stub(delay_seconds=3.0) as stub:
        settings = make_settings(
            tmp_path,
            max_stream_seconds=0.5,
            weather_geocoding_url=stub.geocoding_url,
            weather_forecast_url=stub.forecast_url,
        )
        with serve_in_thread(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                async with aconnect_sse(
                    client, "POST", "/api/chat/message/stream", json={"message": "weather in Paris"}
                ) as source:
                    events = [(e.event, json.loads(e.data)) async for e in source.aiter_sse()]
                sid = events[0][1]["session_id"]
                history = (await client.get(f"/api/chat/history/{sid}")).json()["turns"]
    assert events[-1][0] == "error"
    assert events[-1][1]["code"] == "stream_timeout"
    assert history == []


async def test_secrets_never_leak(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.support.fake_upstream import fail, fake_upstream

    upstream_key = "sk-or-upstream-secret-42"
    caplog.set_level(logging.DEBUG)
    with fake_upstream() as fake:
        fake.always("m1", fail("auth"))
        settings = make_settings(
            tmp_path,
            agent_api_keys=[ALICE],
            openrouter_api_key=upstream_key,
            openrouter_base_url=fake.base_url,
            agent_models=["m1"],
        )
        with serve_in_thread(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                r = await client.post(
                    "/api/chat/message", json={"message": "hello"}, headers=auth(ALICE)
                )
                unauthorized = await client.get("/api/tools", headers=auth("guess-" + ALICE))
    assert r.status_code == 502
    bodies = r.text + unauthorized.text
    logs = caplog.text + repr(settings)
    for secret in (upstream_key, ALICE):
        assert secret not in bodies
        assert secret not in logs
    with sqlite3.connect(settings.database_url.split(":///", 1)[1]) as conn:
        dump = "\n".join(conn.iterdump())
    assert upstream_key not in dump and ALICE not in dump


async def test_security_headers_and_cors(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, cors_origins=["https://app.example"])
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            r = await client.get("/api/tools")
            preflight = await client.options(
                "/api/chat/message",
                headers={
                    "Origin": "https://app.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type",
                },
            )
            foreign = await client.get("/api/tools", headers={"Origin": "https://evil.example"})
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert r.headers["cache-control"] == "no-store"
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in foreign.headers


async def test_cors_off_by_default(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/tools", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in r.headers
