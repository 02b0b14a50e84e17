"""Approvals across surfaces and processes: the Agent Protocol through langgraph-sdk
(`__interrupt__`, thread status `interrupted`, `command={"resume": ...}`), a pause made
on one surface resumed on the other, after a server restart (embedded SQLite, and
Redis), and on the other replica (Redis + PostgreSQL). Exactly one SQL turn per
completed turn, none for a pause.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agent_server.api.app import create_app
from agent_server.config import Settings
from tests.conftest import make_settings
from tests.support.postgres import temporary_database
from tests.support.redis import delete_prefix, require_redis, unique_prefix
from tests.support.servers import serve_in_thread
from tests.support.weather_stub import WeatherStub, weather_stub

SEOUL = {"messages": [{"role": "user", "content": "weather in Seoul"}]}


@pytest.fixture
def stub() -> Iterator[WeatherStub]:
    with weather_stub() as running:
        yield running


def approval_settings(tmp_path: Path, stub: WeatherStub, **overrides: Any) -> Settings:
    return make_settings(
        tmp_path,
        weather_geocoding_url=stub.geocoding_url,
        weather_forecast_url=stub.forecast_url,
        approval_tools=["weather"],
        **overrides,
    )


@asynccontextmanager
async def server(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, LangGraphClient]]:
    with serve_in_thread(create_app(settings)) as url:
        sdk = get_client(url=url, api_key=None)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            try:
                yield http, sdk
            finally:
                await sdk.http.client.aclose()


def sqlite_turns(tmp_path: Path, session_id: str) -> list[str]:
    with sqlite3.connect(tmp_path / "agent.db") as db:
        rows = db.execute(
            "SELECT assistant_message FROM turns WHERE session_id = ?", (session_id,)
        ).fetchall()
    return [row[0] for row in rows]


def pending_of(values: dict[str, Any]) -> list[dict[str, Any]]:
    [interrupt] = values["__interrupt__"]
    assert interrupt["value"]["type"] == "tool_approval"
    return interrupt["value"]["pending_tool_calls"]


def approve_all(pending: list[dict[str, Any]]) -> dict[str, Any]:
    return {"decisions": [{"tool_call_id": c["id"], "action": "approve"} for c in pending]}


async def rest_pause(http: httpx.AsyncClient) -> dict[str, Any]:
    r = await http.post("/api/chat/message", json={"message": "weather in Seoul"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "awaiting_approval"
    return body


async def rest_approve(http: httpx.AsyncClient, paused: dict[str, Any]) -> dict[str, Any]:
    r = await http.post(
        f"/api/chat/session/{paused['session_id']}/approval",
        json=approve_all(paused["pending_tool_calls"]),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed"
    assert "12.3" in body["response"]
    return body


# --- Agent Protocol, embedded --------------------------------------------------------


async def test_agent_protocol_pause_and_resume_with_the_sdk(
    tmp_path: Path, stub: WeatherStub
) -> None:
    async with server(approval_settings(tmp_path, stub)) as (http, sdk):
        thread = (await sdk.threads.create())["thread_id"]
        values = await sdk.runs.wait(thread, "agent", input=SEOUL)
        [call] = pending_of(values)
        assert call["name"] == "weather"
        assert (await sdk.threads.get(thread))["status"] == "interrupted"
        state = await sdk.threads.get_state(thread)
        assert state["next"] == ["approve"]
        assert stub.calls == []
        assert sqlite_turns(tmp_path, thread) == []

        # Decisions that do not fit: 422, and the thread stays paused.
        r = await http.post(
            f"/threads/{thread}/runs/wait",
            json={
                "assistant_id": "agent",
                "command": {"resume": {"decisions": [{"tool_call_id": "x", "action": "approve"}]}},
            },
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_decisions"
        assert (await sdk.threads.get(thread))["status"] == "interrupted"
        # REST sees the same pause.
        r = await http.post("/api/chat/message", json={"message": "hello", "session_id": thread})
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "approval_pending"

        final = await sdk.runs.wait(thread, "agent", command={"resume": approve_all([call])})
        assert "__interrupt__" not in final or not final["__interrupt__"]
        assert "12.3" in str(final["messages"][-1]["content"])
        assert (await sdk.threads.get(thread))["status"] == "idle"
        [answer] = sqlite_turns(tmp_path, thread)
        assert "12.3" in answer
        history = (await http.get(f"/api/chat/history/{thread}")).json()
        assert [a["action"] for a in history["turns"][0]["approvals"]] == ["approve"]


async def test_agent_protocol_stream_shows_the_interrupt(tmp_path: Path, stub: WeatherStub) -> None:
    async with server(approval_settings(tmp_path, stub)) as (_, sdk):
        thread = (await sdk.threads.create())["thread_id"]
        parts = [
            part
            async for part in sdk.runs.stream(
                thread, "agent", input=SEOUL, stream_mode=["updates", "values"]
            )
        ]
        interrupts = [
            p.data["__interrupt__"]
            for p in parts
            if p.event == "updates" and isinstance(p.data, dict) and "__interrupt__" in p.data
        ]
        assert len(interrupts) == 1
        [call] = interrupts[0][0]["value"]["pending_tool_calls"]
        resumed = [
            part
            async for part in sdk.runs.stream(
                thread,
                "agent",
                command={"resume": {"decisions": [{"tool_call_id": call["id"], "action": "deny"}]}},
                stream_mode="updates",
            )
        ]
        nodes = [next(iter(p.data)) for p in resumed if p.event == "updates" and p.data]
        assert nodes[0] == "approve"
        assert "tools" not in nodes  # denied: straight back to the model
        assert nodes[-1] == "persist"
        assert stub.calls == []
        assert len(sqlite_turns(tmp_path, thread)) == 1


async def test_pause_on_one_surface_resume_on_the_other(tmp_path: Path, stub: WeatherStub) -> None:
    async with server(approval_settings(tmp_path, stub)) as (http, sdk):
        # REST pauses, the Agent Protocol resumes.
        paused = await rest_pause(http)
        session = paused["session_id"]
        assert (await sdk.threads.get(session))["status"] == "interrupted"
        state = await sdk.threads.get_state(session)
        [interrupt] = state["interrupts"]
        assert interrupt["value"]["pending_tool_calls"] == paused["pending_tool_calls"]
        final = await sdk.runs.wait(
            session, "agent", command={"resume": approve_all(paused["pending_tool_calls"])}
        )
        assert "12.3" in str(final["messages"][-1]["content"])
        assert len(sqlite_turns(tmp_path, session)) == 1
        r = await http.post("/api/chat/message", json={"message": "thanks", "session_id": session})
        assert r.status_code == 200, r.text

        # The Agent Protocol pauses, REST resumes.
        thread = (await sdk.threads.create())["thread_id"]
        values = await sdk.runs.wait(thread, "agent", input=SEOUL)
        pending = pending_of(values)
        done = await rest_approve(http, {"session_id": thread, "pending_tool_calls": pending})
        assert done["turn_id"]
        assert len(sqlite_turns(tmp_path, thread)) == 1
        assert (await sdk.threads.get(thread))["status"] == "idle"


async def test_agent_protocol_pause_of_a_session_rest_knows_is_a_409_on_rest(
    tmp_path: Path, stub: WeatherStub
) -> None:
    """Embedded mode remembers sessions in-process: one REST used (so remembered idle)
    and the Agent Protocol then paused must still refuse the next REST message."""
    async with server(approval_settings(tmp_path, stub)) as (http, sdk):
        r = await http.post("/api/chat/message", json={"message": "what is 2+2"})
        assert r.status_code == 200, r.text
        session = r.json()["session_id"]
        r = await http.post("/api/chat/message", json={"message": "and 3+3", "session_id": session})
        assert r.status_code == 200, r.text

        values = await sdk.runs.wait(session, "agent", input=SEOUL)
        pending = pending_of(values)
        r = await http.post("/api/chat/message", json={"message": "hello", "session_id": session})
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "approval_pending"

        # Resumed over the protocol: REST takes messages again.
        await sdk.runs.wait(session, "agent", command={"resume": approve_all(pending)})
        r = await http.post("/api/chat/message", json={"message": "thanks", "session_id": session})
        assert r.status_code == 200, r.text
        assert len(sqlite_turns(tmp_path, session)) == 4


# --- restarts and replicas -------------------------------------------------------------


async def test_resume_after_a_restart_embedded(tmp_path: Path, stub: WeatherStub) -> None:
    settings = approval_settings(tmp_path, stub)
    async with server(settings) as (http, _):
        paused = await rest_pause(http)
    assert sqlite_turns(tmp_path, paused["session_id"]) == []
    async with server(settings) as (http, _):
        r = await http.post(
            "/api/chat/message", json={"message": "hi", "session_id": paused["session_id"]}
        )
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "approval_pending"
        done = await rest_approve(http, paused)
        assert done["turn_id"] == paused["turn_id"]
    assert len(sqlite_turns(tmp_path, paused["session_id"])) == 1


@pytest.fixture
async def shared(tmp_path: Path, stub: WeatherStub) -> AsyncIterator[tuple[Settings, Settings]]:
    """Two replicas' settings: one Redis (a prefix of their own), one PostgreSQL."""
    redis_url = require_redis()
    prefix = unique_prefix("approvals")
    async with temporary_database() as database_url:
        common = {"redis_url": redis_url, "redis_key_prefix": prefix, "database_url": database_url}
        try:
            yield (
                approval_settings(tmp_path / "a", stub, **common),
                approval_settings(tmp_path / "b", stub, **common),
            )
        finally:
            delete_prefix(redis_url, prefix)


async def pg_turns(database_url: str, session_id: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text("SELECT count(*) FROM turns WHERE session_id = :s"), {"s": session_id}
            )
            return int(result.scalar_one())
    finally:
        await engine.dispose()


async def test_resume_on_the_other_replica_and_after_a_restart_redis(
    shared: tuple[Settings, Settings],
) -> None:
    a, b = shared
    (tmp := Path(str(a.checkpoint_db_path)).parent).mkdir(parents=True, exist_ok=True)
    Path(str(b.checkpoint_db_path)).parent.mkdir(parents=True, exist_ok=True)
    assert tmp.exists()
    async with server(a) as (http_a, _), server(b) as (http_b, sdk_b):
        paused = await rest_pause(http_a)
        assert await pg_turns(a.database_url, paused["session_id"]) == 0
        # The other replica knows the session is paused, and resumes it.
        r = await http_b.post(
            "/api/chat/message", json={"message": "hi", "session_id": paused["session_id"]}
        )
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "approval_pending"
        await rest_approve(http_b, paused)
        assert await pg_turns(a.database_url, paused["session_id"]) == 1

        # Paused over the Agent Protocol on B, resumed on A.
        thread = (await sdk_b.threads.create())["thread_id"]
        pending = pending_of(await sdk_b.runs.wait(thread, "agent", input=SEOUL))
        await rest_approve(http_a, {"session_id": thread, "pending_tool_calls": pending})
        assert await pg_turns(a.database_url, thread) == 1

        second = await rest_pause(http_a)
    # Every replica restarted: the pause is in Redis.
    async with server(b) as (http_b, _):
        await rest_approve(http_b, second)
    assert await pg_turns(a.database_url, second["session_id"]) == 1


async def test_agent_protocol_bad_edit_is_a_422_then_a_good_one_resumes(
    tmp_path: Path, stub: WeatherStub
) -> None:
    async with server(approval_settings(tmp_path, stub)) as (_, sdk):
        thread = (await sdk.threads.create())["thread_id"]
        [call] = pending_of(await sdk.runs.wait(thread, "agent", input=SEOUL))
        bad = {"tool_call_id": call["id"], "action": "edit", "args": {"nope": 1}}
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await sdk.runs.wait(thread, "agent", command={"resume": {"decisions": [bad]}})
        assert refused.value.response.status_code == 422
        error = refused.value.response.json()["error"]
        assert error["code"] == "invalid_decisions"
        assert error["details"]["problems"]
        assert stub.calls == []
        assert (await sdk.threads.get(thread))["status"] == "interrupted"
        state = await sdk.threads.get_state(thread)
        [interrupt] = state["interrupts"]
        assert interrupt["value"]["pending_tool_calls"] == [call]
        good = {"tool_call_id": call["id"], "action": "edit", "args": {"location": "Paris"}}
        final = await sdk.runs.wait(thread, "agent", command={"resume": {"decisions": [good]}})
        assert not final.get("__interrupt__")
        assert "Paris" in str(final["messages"][-1]["content"])
        assert "geocode:Paris" in stub.calls
        [answer] = sqlite_turns(tmp_path, thread)
        assert "Paris" in answer


async def test_a_regenerated_turn_that_pauses_is_stored_as_a_retake_when_resumed(
    tmp_path: Path, stub: WeatherStub
) -> None:
    """Regenerate (no input, from the checkpoint before the model answered) a turn that
    was approved and stored: it pauses again, and the resume (a command, not a
    retake itself) must still store it as a turn of its own, not skip it as the
    message's first turn."""
    async with server(approval_settings(tmp_path, stub)) as (http, sdk):
        thread = (await sdk.threads.create())["thread_id"]
        values = await sdk.runs.wait(thread, "agent", input=SEOUL)
        await sdk.runs.wait(thread, "agent", command={"resume": approve_all(pending_of(values))})
        assert len(sqlite_turns(tmp_path, thread)) == 1
        history = await sdk.threads.get_history(thread, limit=100)
        # Newest first: the last one before a model call is the turn's first.
        before_model = [s for s in history if s["next"] == ["model"]][-1]
        checkpoint = {k: v for k, v in before_model["checkpoint"].items() if k != "thread_id"}
        values = await sdk.runs.wait(thread, "agent", input=None, checkpoint=checkpoint)
        [call] = pending_of(values)
        await sdk.runs.wait(thread, "agent", command={"resume": approve_all([call])})
        assert len(sqlite_turns(tmp_path, thread)) == 2
        r = await http.get(f"/api/chat/history/{thread}")
        [turn] = r.json()["turns"]
        assert ":retake:" in turn["turn_id"] and "12.3" in turn["response"]
        assert [a["action"] for a in turn["approvals"]] == ["approve"]
