"""The fallback chain through the real langchain-openai path against a fake upstream.

Every test runs the real app (uvicorn) with `OPENROUTER_BASE_URL` pointing at a
scripted OpenAI-compatible server on loopback, then checks the answer,
`model_used`, `fallbacks`, the SSE event sequence, what the upstream received,
and that exactly one turn was persisted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_server.api.app import create_app
from agent_server.config import Settings
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, fail, fake_upstream, text, tool_call
from tests.support.rest_client import persisted, served, sse_events
from tests.support.servers import serve_in_thread

MODELS = ["m1", "m2", "m3"]
API_KEY = "sk-test-secret-123"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


@pytest.fixture
def fake(upstream: FakeUpstream) -> FakeUpstream:
    upstream.reset()
    return upstream


def chain_settings(tmp_path: Path, fake: FakeUpstream, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "openrouter_api_key": API_KEY,
        "openrouter_base_url": fake.base_url,
        "agent_models": MODELS,
        "model_timeout_seconds": 1.0,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


@pytest.fixture
def chain_settings_default(tmp_path: Path, fake: FakeUpstream) -> Settings:
    return chain_settings(tmp_path, fake)


@pytest.fixture
async def api(chain_settings_default: Settings) -> httpx.AsyncClient:
    async with served(chain_settings_default) as client:
        yield client


async def stream(client: httpx.AsyncClient, body: dict[str, Any]) -> list[tuple[str, Any]]:
    return await sse_events(client, body)


def reasons(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["model"], f["reason"]) for f in body["fallbacks"]]


# --- non-streaming -----------------------------------------------------------------


async def test_first_model_answers_with_upstream_accounting(
    api: httpx.AsyncClient, fake: FakeUpstream, chain_settings_default: Settings
) -> None:
    fake.script("m1", text("Hi from m1.", served_model="m1-2026-01", cost=0.0042))
    r = await api.post(
        "/api/chat/message", json={"message": "hello", "temperature": 0.2, "max_tokens": 77}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["response"] == "Hi from m1."
    assert body["model_used"] == "m1-2026-01"
    assert body["fallbacks"] == [] and body["degraded"] is False
    assert body["cost_usd"] == pytest.approx(0.0042)
    assert body["usage"]["output_tokens"] == 3
    assert fake.models_tried() == ["m1"]
    request = fake.requests[0]
    assert request.body["temperature"] == 0.2
    assert request.body.get("max_tokens", request.body.get("max_completion_tokens")) == 77
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert {t["function"]["name"] for t in request.body["tools"]} == {
        "calculator",
        "weather",
        "search",
        "units",
    }
    assert persisted(chain_settings_default) == [("hello", "Hi from m1.", "m1-2026-01")]


async def test_rate_limit_then_server_error_then_success_and_cooldown_next_turn(
    api: httpx.AsyncClient, fake: FakeUpstream, chain_settings_default: Settings
) -> None:
    fake.script("m1", fail("rate_limit", retry_after="60"))
    fake.script("m2", fail("server_error", status=502))
    fake.script("m3", text("third time lucky"))
    r = await api.post("/api/chat/message", json={"message": "hello"})
    body = r.json()
    assert r.status_code == 200, body
    assert body["response"] == "third time lucky"
    assert body["model_used"] == "m3"
    assert reasons(body) == [("m1", "rate_limit"), ("m2", "server_error")]
    assert fake.models_tried() == ["m1", "m2", "m3"]

    # m1 is cooling down (Retry-After 60): the next turn does not even ask it.
    fake.requests.clear()
    fake.script("m2", text("m2 is back"))
    r = await api.post("/api/chat/message", json={"message": "again"})
    body = r.json()
    assert body["model_used"] == "m2"
    assert reasons(body) == [("m1", "cooling_down")]
    assert fake.models_tried() == ["m2"]
    assert len(persisted(chain_settings_default)) == 2


async def test_auth_error_stops_at_once(
    api: httpx.AsyncClient, fake: FakeUpstream, chain_settings_default: Settings
) -> None:
    fake.script("m1", fail("auth"))
    r = await api.post("/api/chat/message", json={"message": "hello"})
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "upstream_auth"
    assert API_KEY not in r.text
    assert fake.models_tried() == ["m1"]
    assert persisted(chain_settings_default) == []


async def test_our_bad_request_is_not_retried(api: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.script("m1", fail("bad_request"))
    r = await api.post("/api/chat/message", json={"message": "hello"})
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_bad_request"
    assert fake.models_tried() == ["m1"]


async def test_all_rate_limited_answers_offline_degraded(
    api: httpx.AsyncClient, fake: FakeUpstream, chain_settings_default: Settings
) -> None:
    for model in MODELS:
        fake.script(model, fail("rate_limit"))
    r = await api.post("/api/chat/message", json={"message": "Calculate 10 * 20"})
    body = r.json()
    assert r.status_code == 200, body
    assert body["degraded"] is True
    assert body["model_used"] == "offline"
    assert "200" in body["response"]
    assert reasons(body)[:3] == [(m, "rate_limit") for m in MODELS]
    assert len(persisted(chain_settings_default)) == 1


async def test_all_failing_gives_503_with_reasons(
    api: httpx.AsyncClient, fake: FakeUpstream, chain_settings_default: Settings
) -> None:
    fake.script("m1", fail("server_error", status=500))
    fake.script("m2", fail("malformed"))
    fake.script("m3", fail("stall", stall_seconds=3))
    r = await api.post("/api/chat/message", json={"message": "hello"})
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["code"] == "upstream_unavailable"
    assert [(m["model"], m["reason"]) for m in error["details"]["models"]] == [
        ("m1", "server_error"),
        ("m2", "malformed_reply"),
        ("m3", "timeout"),
    ]
    assert API_KEY not in r.text
    assert persisted(chain_settings_default) == []
    # The failed first turn of a new session leaves no empty session behind.
    assert (await api.get("/api/chat/sessions")).json()["sessions"] == []


@pytest.mark.parametrize(
    ("behavior", "reason"),
    [
        (fail("server_error", status=503), "server_error"),
        (fail("stall", stall_seconds=3), "timeout"),
        (fail("malformed"), "malformed_reply"),
        (fail("empty"), "malformed_reply"),
        (fail("content_filter"), "content_policy"),
        (fail("invalid_tool_call"), "invalid_tool_call"),
    ],
)
async def test_each_failure_class_falls_back(
    api: httpx.AsyncClient, fake: FakeUpstream, behavior: Any, reason: str
) -> None:
    fake.script("m1", behavior)
    fake.script("m2", text("fine"))
    r = await api.post("/api/chat/message", json={"message": "hello"})
    assert r.status_code == 200, r.text
    assert r.json()["response"] == "fine"
    assert reasons(r.json()) == [("m1", reason)]


async def test_context_too_long_skips_to_a_larger_window(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    settings = chain_settings(
        tmp_path,
        fake,
        model_specs={
            "m1": {"context_window": 8192},
            "m2": {"context_window": 8192},
            "m3": {"context_window": 128000},
        },
    )
    fake.script("m1", fail("context_length"))
    fake.script("m3", text("big window"))
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            r = await client.post("/api/chat/message", json={"message": "hello"})
    body = r.json()
    assert body["response"] == "big window"
    assert reasons(body) == [("m1", "context_too_long"), ("m2", "context_too_long")]
    assert fake.models_tried() == ["m1", "m3"]


async def test_model_override_goes_first_and_unknown_is_422(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    fake.script("m2", text("picked m2"))
    r = await api.post("/api/chat/message", json={"message": "hello", "model": "m2"})
    assert r.json()["model_used"] == "m2"
    assert fake.models_tried() == ["m2"]
    r = await api.post("/api/chat/message", json={"message": "hello", "model": "gpt-expensive"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_model"


async def test_tool_turn_through_langchain_openai(
    api: httpx.AsyncClient, fake: FakeUpstream, chain_settings_default: Settings
) -> None:
    fake.script("m1", tool_call("calculator", {"expression": "10 * 20"}), text("It is 200."))
    r = await api.post("/api/chat/message", json={"message": "Calculate 10 * 20"})
    body = r.json()
    assert body["response"] == "It is 200."
    assert body["tools_used"] == ["calculator"]
    second = fake.requests[1].body["messages"]
    tool_messages = [m for m in second if m["role"] == "tool"]
    assert len(tool_messages) == 1 and '"result": 200' in tool_messages[0]["content"]
    assert second[0]["role"] == "system"
    # Usage of both model calls is summed.
    assert body["usage"]["input_tokens"] > 0
    assert persisted(chain_settings_default) == [("Calculate 10 * 20", "It is 200.", "m1")]


async def test_price_table_cost_when_upstream_reports_none(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    settings = chain_settings(
        tmp_path,
        fake,
        model_specs={"m1": {"input_price_per_mtok": 1_000_000.0, "output_price_per_mtok": 0.0}},
    )
    fake.script("m1", text("priced"))
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            body = (await client.post("/api/chat/message", json={"message": "hello"})).json()
    assert body["cost_usd"] == pytest.approx(body["usage"]["input_tokens"] * 1.0)


async def test_openrouter_extras_are_sent_when_enabled(tmp_path: Path, fake: FakeUpstream) -> None:
    settings = chain_settings(
        tmp_path,
        fake,
        openrouter_server_fallback=True,
        openrouter_provider={"sort": "throughput", "allow_fallbacks": True},
    )
    fake.script("m1", text("ok"))
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await client.post("/api/chat/message", json={"message": "hello"})
    body = fake.requests[0].body
    assert body["models"] == ["m1", "m2", "m3"]
    assert body["provider"] == {"sort": "throughput", "allow_fallbacks": True}


async def test_extras_are_off_by_default(api: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.script("m1", text("ok"))
    await api.post("/api/chat/message", json={"message": "hello"})
    assert "models" not in fake.requests[0].body
    assert "provider" not in fake.requests[0].body


async def test_model_without_tool_support_is_skipped_for_tool_turns(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    settings = chain_settings(tmp_path, fake, model_specs={"m1": {"supports_tools": False}})
    fake.script("m1", text("no tools here"))
    fake.script("m2", text("tools ok"))
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            with_tools = (await client.post("/api/chat/message", json={"message": "hi"})).json()
            without = (
                await client.post("/api/chat/message", json={"message": "hi", "use_tools": False})
            ).json()
    assert with_tools["model_used"] == "m2"
    assert reasons(with_tools) == [("m1", "no_tool_support")]
    assert without["model_used"] == "m1"
    assert "tools" not in fake.requests[-1].body


# --- streaming ----------------------------------------------------------------------


async def test_stream_failover_before_first_token_is_a_fallback_event(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    fake.script("m1", fail("server_error", status=500))
    fake.script("m2", text("streamed by m2"))
    events = await stream(api, {"message": "hello"})
    names = [name for name, _ in events]
    assert names[0] == "metadata" and names[-1] == "done"
    assert "reset" not in names
    fallback = dict(events)["fallback"]
    assert fallback == {"from": "m1", "to": "m2", "reason": "server_error"}
    assert names.index("fallback") < names.index("message")
    done = events[-1][1]
    assert "".join(d["content"] for n, d in events if n == "message") == done["response"]
    assert done["response"] == "streamed by m2"
    assert all(r.stream for r in fake.requests)


@pytest.mark.parametrize(
    ("behavior", "reason"),
    [
        (fail("drop", text="one two three four five", drop_after_tokens=2), "connection"),
        (
            fail("stall", text="one two three four", stall_after_tokens=2, stall_seconds=3),
            "timeout",
        ),
        (fail("malformed", text="one two three four", drop_after_tokens=2), "malformed_reply"),
    ],
)
async def test_stream_failure_after_tokens_resets_then_next_model_streams(
    api: httpx.AsyncClient,
    fake: FakeUpstream,
    chain_settings_default: Settings,
    behavior: Any,
    reason: str,
) -> None:
    fake.script("m1", behavior)
    fake.script("m2", text("a complete answer"))
    events = await stream(api, {"message": "hello"})
    names = [name for name, _ in events]
    assert names.count("reset") == 1
    reset_at = names.index("reset")
    before = "".join(d["content"] for n, d in events[:reset_at] if n == "message")
    after = "".join(d["content"] for n, d in events[reset_at:] if n == "message")
    assert before == "one two"
    assert dict(events)["reset"] == {"model": "m1", "reason": reason}
    done = events[-1]
    assert done[0] == "done"
    assert after == done[1]["response"] == "a complete answer"
    assert reasons(done[1]) == [("m1", reason)]
    assert persisted(chain_settings_default) == [("hello", "a complete answer", "m2")]


async def test_stream_auth_error_is_an_error_event(
    api: httpx.AsyncClient, fake: FakeUpstream, chain_settings_default: Settings
) -> None:
    fake.script("m1", fail("auth"))
    events = await stream(api, {"message": "hello"})
    assert [n for n, _ in events] == ["metadata", "error"]
    assert events[-1][1]["code"] == "upstream_auth"
    assert fake.models_tried() == ["m1"]
    assert persisted(chain_settings_default) == []


async def test_stream_all_rate_limited_is_degraded(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    for model in MODELS:
        fake.script(model, fail("rate_limit", retry_after="1"))
    events = await stream(api, {"message": "Calculate 2 + 3"})
    fallbacks = [data for name, data in events if name == "fallback"]
    # First call: three 429s. After the tool ran, the second call skips all three
    # (cooling down) without asking the upstream again.
    assert [f["reason"] for f in fallbacks] == ["rate_limit"] * 3 + ["cooling_down"] * 3
    assert fake.models_tried() == MODELS
    done = events[-1][1]
    assert done["degraded"] is True and done["model_used"] == "offline"
    assert "5" in done["response"]


async def test_stream_tool_call_deltas_and_usage(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    fake.script(
        "m1",
        tool_call("calculator", {"expression": "6 * 7"}),
        text("The answer is 42.", cost=0.001),
    )
    events = await stream(api, {"message": "Calculate 6 * 7"})
    names = [n for n, _ in events]
    assert names.index("tool_start") < names.index("tool_end") < names.index("message")
    tool_start = dict(events)["tool_start"]
    assert tool_start["name"] == "calculator" and tool_start["args"] == {"expression": "6 * 7"}
    done = events[-1][1]
    assert done["response"] == "The answer is 42."
    assert done["tools_used"] == ["calculator"]
    assert done["usage"]["output_tokens"] > 0
    assert done["cost_usd"] >= 0.001
    assert all(r.body.get("stream_options", {}).get("include_usage") for r in fake.requests)


async def test_stream_of_only_a_role_chunk_is_malformed_and_falls_back(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """The role-only first chunk is dropped before langchain sees it; a stream that
    has nothing else is still a malformed reply, not a crash or an empty answer."""
    fake.script("m1", fail("empty"))
    fake.script("m2", text("fine", served_model="m2-2026", cost=0.25))
    events = await stream(api, {"message": "hello"})
    names = [name for name, _ in events]
    assert "reset" not in names
    assert dict(events)["fallback"] == {"from": "m1", "to": "m2", "reason": "malformed_reply"}
    assert [d["content"] for n, d in events if n == "message"] == ["fine"]
    done = events[-1][1]
    assert done["response"] == "fine" and done["model_used"] == "m2-2026"
    assert done["cost_usd"] == 0.25 and done["usage"]["output_tokens"] == 1


async def test_streamed_request_carries_extras_auth_and_parameters(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """Streamed calls bypass the SDK's request transform (raw chunk dicts): the
    request must still be what `create()` would have sent."""
    settings = chain_settings(
        tmp_path, fake, openrouter_server_fallback=True, openrouter_provider={"sort": "price"}
    )
    fake.script("m1", text("ok"))
    body = {"message": "hello", "temperature": 0.5, "max_tokens": 64, "use_tools": True}
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            events = await stream(client, body)
    assert events[-1][0] == "done"
    request = fake.requests[0]
    assert request.stream
    assert request.body["models"] == ["m1", "m2", "m3"]
    assert request.body["provider"] == {"sort": "price"}
    assert request.body["temperature"] == 0.5
    assert request.body.get("max_completion_tokens", request.body.get("max_tokens")) == 64
    assert request.body["stream_options"] == {"include_usage": True}
    assert {tool["function"]["name"] for tool in request.body["tools"]} >= {"calculator"}
    assert request.body["messages"][-1] == {"role": "user", "content": "hello"}
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["x-title"] == "agent-server"
