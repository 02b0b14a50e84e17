"""The HTTP contract end to end: real uvicorn, real SQLite files, offline model."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse

from agent_server.config import Settings
from tests.support.rest_client import sse_events


def turn_rows(settings: Settings) -> list[tuple[str, str]]:
    path = settings.database_url.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT session_id, assistant_message FROM turns").fetchall()


async def test_calculate_returns_answer_with_accounting(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/chat/message", json={"message": "Calculate 10 * 20"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "200" in body["response"]
    assert body["tools_used"] == ["calculator"]
    assert body["model_used"] == "offline"
    assert body["fallbacks"] == []
    assert body["degraded"] is False
    usage = body["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert body["cost_usd"] == 0.0
    assert body["latency_ms"] >= 0
    assert r.headers["x-request-id"]


async def test_stream_events_in_order_and_deltas_join_to_response(
    client: httpx.AsyncClient,
) -> None:
    events = await sse_events(client, {"message": "Calculate 10 * 20"})
    names = [name for name, _ in events]
    assert names[0] == "metadata"
    assert names[-1] == "done"
    assert names.index("tool_start") < names.index("tool_end") < names.index("message")
    assert set(names[names.index("message") : -1]) == {"message"}
    done = events[-1][1]
    deltas = "".join(str(data["content"]) for name, data in events if name == "message")
    assert deltas == done["response"]
    assert "200" in deltas
    assert events[0][1]["session_id"] == done["session_id"]
    tool_end = dict(events)["tool_end"]
    assert tool_end["name"] == "calculator" and tool_end["status"] == "success"


async def test_history_holds_turns_with_tools_model_and_tokens(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/chat/session")
    assert created.status_code == 201
    session = created.json()
    assert {"session_id", "created_at", "expires_at"} <= session.keys()
    sid = session["session_id"]

    first = await client.post(
        "/api/chat/message", json={"message": "Calculate 10 * 20", "session_id": sid}
    )
    second = await client.post("/api/chat/message", json={"message": "hello", "session_id": sid})
    assert first.status_code == second.status_code == 200

    history = (await client.get(f"/api/chat/history/{sid}")).json()
    turns = history["turns"]
    assert [t["user_message"] for t in turns] == ["Calculate 10 * 20", "hello"]
    assert turns[0]["response"] == first.json()["response"]
    assert turns[0]["tools_used"] == ["calculator"]
    assert turns[0]["model_used"] == "offline"
    assert turns[0]["usage"] == first.json()["usage"]
    assert turns[1]["tools_used"] == []

    listed = (await client.get("/api/chat/sessions")).json()["sessions"]
    assert [(s["session_id"], s["turn_count"]) for s in listed] == [(sid, 2)]


async def test_message_without_session_creates_one(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/chat/message", json={"message": "hi"})
    sid = r.json()["session_id"]
    assert (await client.get(f"/api/chat/history/{sid}")).status_code == 200


async def test_new_session_is_listed_with_its_first_message_as_title(
    client: httpx.AsyncClient,
) -> None:
    """A new session's row is written with its first turn (not before it)."""
    r = await client.post("/api/chat/message", json={"message": "Calculate 6*7"})
    sid = r.json()["session_id"]
    listed = (await client.get("/api/chat/sessions")).json()["sessions"]
    assert [(s["session_id"], s["title"], s["turn_count"]) for s in listed] == [
        (sid, "Calculate 6*7", 1)
    ]


async def test_stream_of_a_new_session_holds_it_from_the_first_event(
    client: httpx.AsyncClient, live_url: str
) -> None:
    """The metadata event reveals the new session's id while the turn still runs:
    the session must already exist and be locked (409, not 404)."""
    async with (
        httpx.AsyncClient(base_url=live_url, timeout=30) as other,
        aconnect_sse(
            client, "POST", "/api/chat/message/stream", json={"message": "Calculate 1+1"}
        ) as source,
    ):
        events = source.aiter_sse()
        first = await anext(events)
        assert first.event == "metadata"
        sid = json.loads(first.data)["session_id"]
        busy = await other.post("/api/chat/message", json={"message": "hi", "session_id": sid})
        assert busy.status_code == 409
        assert [event.event async for event in events][-1] == "done"
    again = await client.post("/api/chat/message", json={"message": "hi", "session_id": sid})
    assert again.status_code == 200
    turns = (await client.get(f"/api/chat/history/{sid}")).json()["turns"]
    assert [t["user_message"] for t in turns] == ["Calculate 1+1", "hi"]


async def test_context_carries_across_turns_of_a_session(client: httpx.AsyncClient) -> None:
    """The second turn sees the first: the checkpoint holds the whole thread."""
    sid = (await client.post("/api/chat/session")).json()["session_id"]
    await client.post("/api/chat/message", json={"message": "Calculate 2 + 2", "session_id": sid})
    r = await client.post(
        "/api/chat/message", json={"message": "Calculate 3 * 3", "session_id": sid}
    )
    assert r.json()["response"] == "3 * 3 = 9"
    assert r.json()["usage"]["input_tokens"] > 0


async def test_use_tools_false_never_calls_tools(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/chat/message", json={"message": "Calculate 10 * 20", "use_tools": False}
    )
    assert r.status_code == 200
    assert r.json()["tools_used"] == []


async def test_tools_subset_restricts_the_run(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/chat/message", json={"message": "Calculate 10 * 20", "tools": ["search"]}
    )
    assert r.status_code == 200
    assert r.json()["tools_used"] == []


async def test_delete_session_removes_it(client: httpx.AsyncClient, settings: Settings) -> None:
    sid = (await client.post("/api/chat/message", json={"message": "hi"})).json()["session_id"]
    assert (await client.delete(f"/api/chat/session/{sid}")).status_code == 204
    assert (await client.get(f"/api/chat/history/{sid}")).status_code == 404
    assert (await client.delete(f"/api/chat/session/{sid}")).status_code == 404
    assert turn_rows(settings) == []
    r = await client.post("/api/chat/message", json={"message": "hi", "session_id": sid})
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"message": ""}, 422, "validation_error"),
        ({"message": "   "}, 422, "validation_error"),
        ({"message": "hi", "temperature": 3}, 422, "validation_error"),
        ({"message": "hi", "temperature": -0.1}, 422, "validation_error"),
        ({"message": "hi", "max_tokens": 0}, 422, "validation_error"),
        ({"message": "hi", "max_tokens": 4001}, 422, "validation_error"),
        ({"message": 42}, 422, "validation_error"),
        ({"message": "hi", "use_tools": "maybe"}, 422, "validation_error"),
        ({"message": "x" * 32_001}, 422, "validation_error"),
        ({"message": "hi", "unexpected": 1}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"message": "hi", "model": "openai/gpt-5-very-expensive"}, 422, "invalid_model"),
        ({"message": "hi", "tools": ["rm_rf"]}, 422, "invalid_tools"),
        ({"message": "hi", "session_id": "no-such-session"}, 404, "session_not_found"),
    ],
)
@pytest.mark.parametrize("path", ["/api/chat/message", "/api/chat/message/stream"])
async def test_bad_input_gets_json_error(
    client: httpx.AsyncClient, path: str, body: dict[str, object], status: int, code: str
) -> None:
    r = await client.post(path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == r.headers["x-request-id"]


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/chat/message",
        content=b'{"message": "hi",',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"


async def test_unknown_route_and_method_use_error_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await client.put("/api/chat/message", json={})
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    rid = "0123456789abcdef0123456789abcdef"
    r = await client.get("/healthz", headers={"X-Request-ID": rid})
    assert r.headers["x-request-id"] == rid


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"


async def test_catalog_lists_tools_and_models(client: httpx.AsyncClient) -> None:
    tools = (await client.get("/api/tools")).json()["tools"]
    assert {t["name"] for t in tools} == {"calculator", "weather", "search", "units"}
    calculator = next(t for t in tools if t["name"] == "calculator")
    assert "expression" in calculator["parameters"]["properties"]
    models = (await client.get("/api/models")).json()
    assert models["offline_only"] is True
    assert [m["id"] for m in models["models"]] == ["offline"]


async def test_concurrent_messages_on_one_session_get_409(
    client: httpx.AsyncClient, live_url: str
) -> None:
    sid = (await client.post("/api/chat/session")).json()["session_id"]
    # Hold the session's lock with an open stream, then send a second message.
    async with (
        httpx.AsyncClient(base_url=live_url, timeout=30) as other,
        aconnect_sse(
            client,
            "POST",
            "/api/chat/message/stream",
            json={"message": "Calculate 1+1", "session_id": sid},
        ) as source,
    ):
        events = source.aiter_sse()
        first = await anext(events)
        assert first.event == "metadata"
        busy = await other.post("/api/chat/message", json={"message": "hi", "session_id": sid})
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "session_busy"
        rest = [event.event async for event in events]
        assert rest[-1] == "done"
    # Released after the stream ended.
    again = await client.post("/api/chat/message", json={"message": "hi", "session_id": sid})
    assert again.status_code == 200


async def test_client_disconnect_mid_stream_releases_lock_and_writes_no_turn(
    tmp_path: Path,
) -> None:
    """A slow tool keeps the run busy; the client goes away; the run is cancelled."""
    from agent_server.api.app import create_app
    from tests.conftest import make_settings
    from tests.support.servers import serve_in_thread
    from tests.support.weather_stub import weather_stub

    with weather_stub(delay_seconds=3.0) as stub:
        settings = make_settings(
            tmp_path,
            weather_geocoding_url=stub.geocoding_url,
            weather_forecast_url=stub.forecast_url,
            weather_timeout_seconds=10.0,
        )
        with serve_in_thread(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                sid = (await client.post("/api/chat/session")).json()["session_id"]
                body = {"message": "weather in Seoul", "session_id": sid}
                async with aconnect_sse(
                    client, "POST", "/api/chat/message/stream", json=body
                ) as source:
                    seen = []
                    async for event in source.aiter_sse():
                        seen.append(event.event)
                        if event.event == "tool_start":
                            break  # disconnect while the tool is running
                assert seen == ["metadata", "tool_start"]
                # The server notices the disconnect, cancels the run and frees the lock.
                for _ in range(100):
                    r = await client.post(
                        "/api/chat/message", json={"message": "hi", "session_id": sid}
                    )
                    if r.status_code != 409:
                        break
                    await asyncio.sleep(0.05)
                assert r.status_code == 200
                history = (await client.get(f"/api/chat/history/{sid}")).json()["turns"]
                assert [t["user_message"] for t in history] == ["hi"]
