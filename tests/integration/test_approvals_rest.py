"""Human approval of tool calls over REST and SSE, through the real graph.

With `APPROVAL_TOOLS=weather` the offline model's weather call pauses the turn; the
decisions endpoint resumes it. The fake upstream scripts parallel calls (mixed
decisions, a tool needing no approval beside one that does).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_server.api.app import create_app
from agent_server.config import Settings
from tests.conftest import make_settings
from tests.support.fake_upstream import Behavior, FakeUpstream, fake_upstream, text
from tests.support.servers import serve_in_thread
from tests.support.weather_stub import WeatherStub, weather_stub

API_KEY = "sk-approvals"


@pytest.fixture
def stub() -> Iterator[WeatherStub]:
    with weather_stub() as running:
        yield running


def offline_settings(tmp_path: Path, stub: WeatherStub, **overrides: Any) -> Settings:
    return make_settings(
        tmp_path,
        weather_geocoding_url=stub.geocoding_url,
        weather_forecast_url=stub.forecast_url,
        approval_tools=["weather"],
        **overrides,
    )


@pytest.fixture
async def client(tmp_path: Path, stub: WeatherStub) -> AsyncIterator[httpx.AsyncClient]:
    with serve_in_thread(create_app(offline_settings(tmp_path, stub))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield http


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


@pytest.fixture
async def scripted(
    tmp_path: Path, stub: WeatherStub, upstream: FakeUpstream
) -> AsyncIterator[tuple[httpx.AsyncClient, FakeUpstream]]:
    upstream.reset()
    settings = offline_settings(
        tmp_path,
        stub,
        openrouter_api_key=API_KEY,
        openrouter_base_url=upstream.base_url,
        agent_models=["m1"],
        model_timeout_seconds=5.0,
    )
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield http, upstream


def sql_turns(tmp_path: Path, session_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp_path / "agent.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT * FROM turns WHERE session_id = ? ORDER BY created_at", (session_id,)
        ).fetchall()
    return [dict(row) for row in rows]


async def ask(client: httpx.AsyncClient, message: str, **extra: Any) -> dict[str, Any]:
    r = await client.post("/api/chat/message", json={"message": message, **extra})
    assert r.status_code == 200, r.text
    return r.json()


async def decide(
    client: httpx.AsyncClient, session_id: str, *decisions: dict[str, Any], status: int = 200
) -> dict[str, Any]:
    r = await client.post(
        f"/api/chat/session/{session_id}/approval", json={"decisions": list(decisions)}
    )
    assert r.status_code == status, r.text
    return r.json()


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = line.split(":", 1)[1].strip()
        if name and data is not None:
            events.append((name, json.loads(data)))
    return events


def parallel(*calls: tuple[str, dict[str, Any]]) -> Behavior:
    return Behavior(kind="tool_call", tool_calls=list(calls))


def tool_results(upstream: FakeUpstream) -> list[dict[str, Any]]:
    """The tool messages of the last request the model got."""
    return [m for m in upstream.requests[-1].body["messages"] if m.get("role") == "tool"]


# --- offline model, APPROVAL_TOOLS=weather ------------------------------------------


async def test_weather_question_pauses_then_approve_runs_the_tool(
    client: httpx.AsyncClient, stub: WeatherStub, tmp_path: Path
) -> None:
    paused = await ask(client, "weather in Seoul")
    assert paused["status"] == "awaiting_approval"
    [call] = paused["pending_tool_calls"]
    assert call["name"] == "weather"
    assert "Seoul" in json.dumps(call["args"])
    assert paused["response"] == ""
    assert stub.calls == []  # nothing ran yet
    session = paused["session_id"]
    assert sql_turns(tmp_path, session) == []  # a pause writes no turn

    done = await decide(client, session, {"tool_call_id": call["id"], "action": "approve"})
    assert done["status"] == "completed"
    assert done["pending_tool_calls"] == []
    assert done["turn_id"] == paused["turn_id"]
    assert "12.3" in done["response"]
    assert done["tools_used"] == ["weather"]
    assert any(c.startswith("geocode:") for c in stub.calls)

    [turn] = sql_turns(tmp_path, session)
    assert turn["assistant_message"] == done["response"]
    history = (await client.get(f"/api/chat/history/{session}")).json()
    [shown] = history["turns"]
    [approval] = shown["approvals"]
    assert approval["action"] == "approve"
    assert approval["tool_call_id"] == call["id"]
    assert approval["name"] == "weather"
    assert approval["decided_by"]
    assert approval["decided_at"]

    # Decided: the session takes messages again, and decisions are now a 409.
    again = await decide(
        client, session, {"tool_call_id": call["id"], "action": "approve"}, status=409
    )
    assert again["error"]["code"] == "not_awaiting_approval"
    nxt = await ask(client, "what is 2+2", session_id=session)
    assert nxt["status"] == "completed"


async def test_deny_tells_the_model_and_writes_one_turn(
    client: httpx.AsyncClient, stub: WeatherStub, tmp_path: Path
) -> None:
    paused = await ask(client, "weather in Seoul")
    [call] = paused["pending_tool_calls"]
    done = await decide(
        client,
        paused["session_id"],
        {"tool_call_id": call["id"], "action": "deny", "reason": "no lookups today"},
    )
    assert done["status"] == "completed"
    assert stub.calls == []
    assert done["tools_used"] == []
    [turn] = sql_turns(tmp_path, paused["session_id"])
    approvals = json.loads(turn["metadata"])["approvals"]
    assert approvals[0]["action"] == "deny"
    assert approvals[0]["reason"] == "no lookups today"


async def test_edit_good_and_bad_args(
    client: httpx.AsyncClient, stub: WeatherStub, tmp_path: Path
) -> None:
    paused = await ask(client, "weather in Seoul")
    [call] = paused["pending_tool_calls"]
    session = paused["session_id"]
    bad = await decide(
        client,
        session,
        {"tool_call_id": call["id"], "action": "edit", "args": {"nope": 1}},
        status=422,
    )
    assert bad["error"]["code"] == "invalid_decisions"
    assert stub.calls == []
    # Still paused: a message is refused, good decisions go through.
    r = await client.post("/api/chat/message", json={"message": "hi", "session_id": session})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "approval_pending"
    done = await decide(
        client,
        session,
        {"tool_call_id": call["id"], "action": "edit", "args": {"location": "Paris"}},
    )
    assert done["status"] == "completed"
    assert "geocode:Paris" in stub.calls
    assert "geocode:Seoul" not in stub.calls
    assert "Paris" in done["response"]
    [turn] = sql_turns(tmp_path, session)
    [approval] = json.loads(turn["metadata"])["approvals"]
    assert approval["action"] == "edit"
    assert approval["args"] == {"location": "Paris"}


async def test_the_409s_and_422s(client: httpx.AsyncClient) -> None:
    # Not paused: a session with a completed turn, and one never used.
    done = await ask(client, "what is 2+2")
    assert done["status"] == "completed"
    for session in (done["session_id"],):
        body = await decide(client, session, {"tool_call_id": "x", "action": "approve"}, status=409)
        assert body["error"]["code"] == "not_awaiting_approval"
    r = await client.post(
        "/api/chat/session/no-such-session/approval",
        json={"decisions": [{"tool_call_id": "x", "action": "approve"}]},
    )
    assert r.status_code == 404

    paused = await ask(client, "weather in Seoul")
    [call] = paused["pending_tool_calls"]
    session = paused["session_id"]
    missing = await decide(client, session, status=422)
    assert missing["error"]["code"] == "invalid_decisions"
    unknown = await decide(
        client,
        session,
        {"tool_call_id": call["id"], "action": "approve"},
        {"tool_call_id": "call_other", "action": "approve"},
        status=422,
    )
    assert "not a pending tool call" in unknown["error"]["message"]
    twice = await decide(
        client,
        session,
        {"tool_call_id": call["id"], "action": "approve"},
        {"tool_call_id": call["id"], "action": "deny"},
        status=422,
    )
    assert "exactly one decision" in twice["error"]["message"]
    bad_action = await decide(
        client, session, {"tool_call_id": call["id"], "action": "maybe"}, status=422
    )
    assert bad_action["error"]["code"] == "validation_error"
    edit_without_args = await decide(
        client, session, {"tool_call_id": call["id"], "action": "edit"}, status=422
    )
    assert edit_without_args["error"]["code"] == "invalid_decisions"
    r = await client.post("/api/chat/message", json={"message": "hi", "session_id": session})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "approval_pending"
    # After all of that, it is still paused and resumes.
    done = await decide(client, session, {"tool_call_id": call["id"], "action": "approve"})
    assert done["status"] == "completed"


async def test_require_approval_adds_tools_per_request(tmp_path: Path, stub: WeatherStub) -> None:
    settings = make_settings(
        tmp_path,
        weather_geocoding_url=stub.geocoding_url,
        weather_forecast_url=stub.forecast_url,
    )
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            plain = await ask(http, "weather in Seoul")
            assert plain["status"] == "completed"  # nothing configured: runs as before
            paused = await ask(http, "weather in Paris", require_approval=["weather"])
            assert paused["status"] == "awaiting_approval"
            [call] = paused["pending_tool_calls"]
            # The resume carries no context: the pending calls still take the decisions.
            done = await decide(
                http, paused["session_id"], {"tool_call_id": call["id"], "action": "deny"}
            )
            assert done["status"] == "completed"
            assert "geocode:Paris" not in stub.calls
            r = await http.post(
                "/api/chat/message", json={"message": "hi", "require_approval": ["nope"]}
            )
            assert r.status_code == 422
            assert r.json()["error"]["code"] == "invalid_tools"


async def test_resume_after_the_turn_deadline(tmp_path: Path, stub: WeatherStub) -> None:
    settings = offline_settings(tmp_path, stub, turn_deadline_seconds=1.0)
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            paused = await ask(http, "weather in Seoul")
            [call] = paused["pending_tool_calls"]
            time.sleep(1.5)  # the person takes longer than the whole turn may
            done = await decide(
                http, paused["session_id"], {"tool_call_id": call["id"], "action": "approve"}
            )
            assert done["status"] == "completed"
            assert done["degraded"] is False
            assert "12.3" in done["response"]
            assert done["latency_ms"] < 1500  # machine time, not the wait


async def test_stream_event_sequences(client: httpx.AsyncClient, stub: WeatherStub) -> None:
    r = await client.post("/api/chat/message/stream", json={"message": "weather in Seoul"})
    assert r.status_code == 200
    events = sse_events(r.text)
    names = [name for name, _ in events]
    assert names[0] == "metadata"
    assert names[-2:] == ["approval_required", "done"]
    assert "tool_start" not in names
    pending = events[-2][1]["pending_tool_calls"]
    assert events[-1][1]["status"] == "awaiting_approval"
    assert events[-1][1]["pending_tool_calls"] == pending
    session = events[0][1]["session_id"]

    r = await client.post(
        f"/api/chat/session/{session}/approval/stream",
        json={"decisions": [{"tool_call_id": pending[0]["id"], "action": "approve"}]},
    )
    assert r.status_code == 200
    events = sse_events(r.text)
    names = [name for name, _ in events]
    assert names[0] == "metadata"
    assert names.index("tool_start") < names.index("tool_end") < names.index("done")
    assert "message" in names
    assert names[-1] == "done"
    assert events[-1][1]["status"] == "completed"
    assert "12.3" in events[-1][1]["response"]

    # A 422 on the stream route comes before the stream (a JSON error, not SSE).
    paused = await ask(client, "weather in Paris")
    r = await client.post(
        f"/api/chat/session/{paused['session_id']}/approval/stream", json={"decisions": []}
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_decisions"


# --- scripted model: parallel calls ----------------------------------------------------


async def test_mixed_decisions_in_one_round_of_parallel_calls(
    scripted: tuple[httpx.AsyncClient, FakeUpstream], stub: WeatherStub, tmp_path: Path
) -> None:
    client, upstream = scripted
    upstream.script(
        "m1",
        parallel(
            ("weather", {"location": "Seoul"}),
            ("weather", {"location": "Paris"}),
            ("weather", {"location": "Oslo"}),
        ),
        text("Done."),
    )
    paused = await ask(client, "three places")
    calls = paused["pending_tool_calls"]
    assert [c["args"]["location"] for c in calls] == ["Seoul", "Paris", "Oslo"]
    done = await decide(
        client,
        paused["session_id"],
        {"tool_call_id": calls[0]["id"], "action": "approve"},
        {"tool_call_id": calls[1]["id"], "action": "deny", "reason": "not Paris"},
        {"tool_call_id": calls[2]["id"], "action": "edit", "args": {"location": "Paris"}},
    )
    assert done["status"] == "completed"
    assert done["response"] == "Done."
    assert sorted(c for c in stub.calls if c.startswith("geocode:")) == [
        "geocode:Paris",
        "geocode:Seoul",
    ]
    results = {m["tool_call_id"]: m["content"] for m in tool_results(upstream)}
    assert set(results) == {c["id"] for c in calls}
    assert "declined" in results[calls[1]["id"]] and "not Paris" in results[calls[1]["id"]]
    assert "12.3" in results[calls[0]["id"]]
    [turn] = sql_turns(tmp_path, paused["session_id"])
    actions = [a["action"] for a in json.loads(turn["metadata"])["approvals"]]
    assert actions == ["approve", "deny", "edit"]


async def test_a_tool_needing_no_approval_waits_and_runs_in_the_same_round(
    scripted: tuple[httpx.AsyncClient, FakeUpstream], stub: WeatherStub
) -> None:
    client, upstream = scripted
    upstream.script(
        "m1",
        parallel(("calculator", {"expression": "6*7"}), ("weather", {"location": "Seoul"})),
        text("All done."),
    )
    paused = await ask(client, "both")
    [call] = paused["pending_tool_calls"]  # only the one that needs a person
    assert call["name"] == "weather"
    assert len(upstream.requests) == 1
    done = await decide(
        client, paused["session_id"], {"tool_call_id": call["id"], "action": "deny"}
    )
    assert done["status"] == "completed"
    assert done["tools_used"] == ["calculator"]
    results = tool_results(upstream)
    assert len(results) == 2
    assert any("42" in m["content"] for m in results)
    assert len(upstream.requests) == 2  # one round, then the answer


# --- cost of the ordinary message, metrics -------------------------------------------


def metric(text_: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text_.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def _round_trips(tmp_path: Path, stub: WeatherStub, approval_tools: list[str]) -> int:
    """SQL statements plus checkpointer operations of the second message of a session
    (no tool call), on a server with `APPROVAL_TOOLS` as given."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    settings = make_settings(
        tmp_path,
        weather_geocoding_url=stub.geocoding_url,
        weather_forecast_url=stub.forecast_url,
        approval_tools=approval_tools,
    )
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            first = await ask(http, "hello")
            before = metric(
                (await http.get("/metrics")).text, "agent_checkpointer_duration_seconds_count"
            )
            event.listen(Engine, "before_cursor_execute", count)
            try:
                second = await ask(http, "hello again", session_id=first["session_id"])
            finally:
                event.remove(Engine, "before_cursor_execute", count)
            after = metric(
                (await http.get("/metrics")).text, "agent_checkpointer_duration_seconds_count"
            )
    assert second["status"] == "completed"
    return len(statements) + int(after - before)


async def test_an_ordinary_message_costs_no_extra_round_trip(
    tmp_path: Path, stub: WeatherStub
) -> None:
    without = await _round_trips(tmp_path / "plain", stub, [])
    with_approvals = await _round_trips(tmp_path / "approvals", stub, ["weather"])
    assert without > 0
    assert with_approvals == without


async def test_metrics_count_one_request_and_one_decision_per_call(
    client: httpx.AsyncClient,
) -> None:
    paused = await ask(client, "weather in Seoul")
    [call] = paused["pending_tool_calls"]
    await decide(client, paused["session_id"], {"tool_call_id": call["id"], "action": "approve"})
    text_ = (await client.get("/metrics")).text
    assert metric(text_, 'agent_approvals_requested_total{tool="weather"}') == 1
    assert metric(text_, 'agent_approvals_decided_total{action="approve",tool="weather"}') == 1
    assert metric(text_, "agent_approval_wait_seconds_count") == 1


async def test_the_resumed_turn_keeps_the_message_options(
    scripted: tuple[httpx.AsyncClient, FakeUpstream], stub: WeatherStub
) -> None:
    """The options of the message that paused (tools, temperature, max_tokens) hold
    for the rest of its turn: the resume must not widen the tools to every tool."""
    client, upstream = scripted
    upstream.script(
        "m1",
        parallel(("weather", {"location": "Seoul"})),
        text("Sunny."),
    )
    paused = await ask(client, "weather please", tools=["weather"], temperature=0.2, max_tokens=77)
    [call] = paused["pending_tool_calls"]
    first = upstream.requests[-1].body
    assert [t["function"]["name"] for t in first["tools"]] == ["weather"]
    done = await decide(
        client, paused["session_id"], {"tool_call_id": call["id"], "action": "approve"}
    )
    assert done["status"] == "completed"
    resumed = upstream.requests[-1].body
    assert [t["function"]["name"] for t in resumed["tools"]] == ["weather"]
    assert resumed["temperature"] == 0.2
    assert (resumed.get("max_tokens") or resumed.get("max_completion_tokens")) == 77
    assert {k: first.get(k) for k in ("max_tokens", "max_completion_tokens")} == {
        k: resumed.get(k) for k in ("max_tokens", "max_completion_tokens")
    }

    # The next message is a turn of its own: its options are its own again.
    upstream.script("m1", text("Four."))
    await ask(client, "2+2", session_id=paused["session_id"])
    names = {t["function"]["name"] for t in upstream.requests[-1].body["tools"]}
    assert {"weather", "calculator"} <= names
