"""Metrics, structured logs, readiness under a Redis outage, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse
from prometheus_client.parser import text_string_to_metric_families

from agent_server.api.app import create_app
from tests.conftest import make_settings
from tests.support.fake_upstream import fail, fake_upstream, text
from tests.support.redis_server import redis_server
from tests.support.servers import free_port, serve_in_thread
from tests.support.weather_stub import weather_stub

KEY = "obs-key-0123456789abcdef"


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_after_a_scripted_turn(tmp_path: Path) -> None:
    with fake_upstream() as fake:
        fake.script("m1", fail("server_error", status=503))
        fake.script("m2", text("hello there", cost=0.002))
        settings = make_settings(
            tmp_path,
            openrouter_api_key="sk-obs",
            openrouter_base_url=fake.base_url,
            agent_models=["m1", "m2"],
        )
        with serve_in_thread(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                r = await client.post("/api/chat/message", json={"message": "hi"})
                assert r.status_code == 200
                sid = r.json()["session_id"]
                await client.get(f"/api/chat/history/{sid}")
                await client.get("/api/chat/history/does-not-exist")
                metrics = samples((await client.get("/metrics")).text)

    assert (
        value(
            metrics,
            "agent_http_requests_total",
            method="POST",
            route="/api/chat/message",
            status="200",
        )
        == 1
    )
    # Route templates, never raw ids, as labels.
    assert (
        value(
            metrics,
            "agent_http_requests_total",
            method="GET",
            route="/api/chat/history/{session_id}",
            status="200",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "agent_http_requests_total",
            method="GET",
            route="/api/chat/history/{session_id}",
            status="404",
        )
        == 1
    )
    assert not any(sid in str(labels) for _, labels in metrics)
    assert (
        value(
            metrics,
            "agent_http_request_duration_seconds_count",
            method="POST",
            route="/api/chat/message",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "agent_model_calls_total",
            provider="openrouter",
            model="m1",
            outcome="server_error",
        )
        == 1
    )
    assert (
        value(
            metrics, "agent_model_calls_total", provider="openrouter", model="m2", outcome="success"
        )
        == 1
    )
    assert value(metrics, "agent_fallbacks_total", reason="server_error") == 1
    assert value(metrics, "agent_tokens_total", model="m2", direction="output") == 2
    assert value(metrics, "agent_cost_usd_total", model="m2") == pytest.approx(0.002)
    assert value(metrics, "agent_turns_total", degraded="false") == 1
    assert value(metrics, "agent_active_runs") == 0
    assert value(metrics, "agent_open_streams") == 0
    # CHECKPOINT_DURABILITY=exit: one checkpoint write for the whole turn.
    assert value(metrics, "agent_checkpointer_duration_seconds_count", operation="put") == 1
    assert value(metrics, "agent_checkpointer_duration_seconds_count", operation="get_tuple") >= 1


async def test_tool_metrics_and_stream_gauges(client: httpx.AsyncClient) -> None:
    async with aconnect_sse(
        client, "POST", "/api/chat/message/stream", json={"message": "Calculate 10 * 20"}
    ) as source:
        names = [event.event async for event in source.aiter_sse()]
    assert names[-1] == "done"
    metrics = samples((await client.get("/metrics")).text)
    assert value(metrics, "agent_tool_calls_total", tool="calculator", status="success") == 1
    assert value(metrics, "agent_tool_duration_seconds_count", tool="calculator") == 1
    assert value(metrics, "agent_open_streams") == 0
    assert value(metrics, "agent_active_runs") == 0


async def test_logs_are_json_with_context_and_no_secrets(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(
        tmp_path, agent_api_keys=[KEY], log_format="json", openrouter_api_key=None
    )
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            r = await client.post(
                "/api/chat/message",
                json={"message": "Calculate 10 * 20"},
                headers={"Authorization": f"Bearer {KEY}", "X-Request-ID": "a" * 32},
            )
            await client.get("/api/tools", headers={"Authorization": "Bearer wrong-" + KEY})
    out = capfd.readouterr()
    lines = [json.loads(line) for line in (out.out + out.err).splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    turns = [line for line in lines if line.get("event") == "turn"]
    message_line = next(line for line in requests if line["route"] == "/api/chat/message")
    assert message_line["request_id"] == "a" * 32
    assert message_line["status"] == 200
    assert message_line["principal"].startswith("env:")
    assert message_line["session_id"] == r.json()["session_id"]
    assert message_line["run_id"] == r.json()["turn_id"]
    assert {"timestamp", "level", "duration_ms"} <= message_line.keys()
    turn = turns[0]
    assert turn["model_used"] == "offline"
    assert turn["tools_used"] == ["calculator"]
    assert turn["input_tokens"] > 0 and turn["output_tokens"] > 0
    assert {"cost_usd", "latency_ms", "fallbacks", "request_id"} <= turn.keys()
    assert any(line["status"] == 401 for line in requests)
    assert KEY not in out.out + out.err


async def test_readyz_and_requests_follow_a_test_owned_redis(tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(tmp_path, redis_url=f"redis://127.0.0.1:{port}/0")
    with ExitStack() as redis_up, serve_in_thread(create_app(settings)) as url:
        redis_up.enter_context(redis_server(port=port))
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok"
            sid = (await client.post("/api/chat/session")).json()["session_id"]
            body = {"message": "hi", "session_id": sid}
            assert (await client.post("/api/chat/message", json=body)).status_code == 200

            redis_up.close()  # Redis goes down under the running app
            stopped_at = time.monotonic()
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["redis"].startswith("error")
            down = await client.post("/api/chat/message", json=body)
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "store_unavailable"
            assert time.monotonic() - stopped_at < 10  # quick, no hang

            with redis_server(port=port):
                for _ in range(50):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                assert (await client.get("/readyz")).status_code == 200
                again = await client.post("/api/chat/message", json=body)
                assert again.status_code == 200, again.text
            history = (await client.get(f"/api/chat/history/{sid}")).json()["turns"]
            assert len(history) == 2  # nothing half-written during the outage


def _start_server(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}",
        "CHECKPOINT_DB_PATH": str(tmp_path / "cp.db"),
        "KNOWLEDGE_DB_PATH": str(tmp_path / "kb.db"),
        "OPENROUTER_API_KEY": "",
        "AGENT_API_KEYS": "",
        "LOG_FORMAT": "json",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "agent_server.cli", "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(200):
            if process.poll() is not None:
                raise AssertionError(process.stderr.read().decode() if process.stderr else "")
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not start")


@pytest.mark.parametrize(
    ("tool_delay", "grace", "expect"),
    [(5.0, 1.0, "shutting_down"), (0.5, 4.0, "done")],
)
async def test_sigterm_during_a_stream(
    tmp_path: Path, tool_delay: float, grace: float, expect: str
) -> None:
    port = free_port()
    with weather_stub(delay_seconds=tool_delay) as stub:
        process = _start_server(
            tmp_path,
            port,
            SHUTDOWN_GRACE_SECONDS=str(grace),
            WEATHER_GEOCODING_URL=stub.geocoding_url,
            WEATHER_FORECAST_URL=stub.forecast_url,
            WEATHER_TIMEOUT_SECONDS="30",
            TOOL_TIMEOUT_SECONDS="30",
        )
        url = f"http://127.0.0.1:{port}"
        try:
            await _wait_healthy(url, process)
            events: list[tuple[str, dict]] = []
            body = {"message": "weather in Seoul"}
            async with (
                httpx.AsyncClient(base_url=url, timeout=30) as client,
                aconnect_sse(client, "POST", "/api/chat/message/stream", json=body) as source,
            ):
                async for event in source.aiter_sse():
                    events.append((event.event, json.loads(event.data)))
                    if event.event == "tool_start":
                        process.send_signal(signal.SIGTERM)
            # uvicorn re-raises the signal after its graceful shutdown.
            assert process.wait(timeout=grace + 15) in (0, -signal.SIGTERM)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    names = [name for name, _ in events]
    sid = events[0][1]["session_id"]
    with sqlite3.connect(tmp_path / "agent.db") as conn:
        stored = conn.execute(
            "SELECT assistant_message FROM turns WHERE session_id = ?", (sid,)
        ).fetchall()
    if expect == "done":
        assert names[-1] == "done"
        assert stored == [(events[-1][1]["response"],)]
    else:
        assert names[-1] == "error"
        assert events[-1][1]["code"] == "shutting_down"
        assert stored == []  # the cut-off turn was not half-written
