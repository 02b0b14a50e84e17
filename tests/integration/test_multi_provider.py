"""Two fake upstreams as two providers of one models file, through the real app over
HTTP: every fault of issue 17 still gets an answer from the next model, `fallbacks`
name the provider, `GET /api/models` shows the health, and exactly one turn is
persisted per answered request (none for a rejected one)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_server.api.app import create_app
from agent_server.config import Settings
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, fail, fake_upstream, text
from tests.support.rest_client import persisted, served, sse_events
from tests.support.servers import free_port, serve_in_thread

KEY_A = "sk-provider-a-secret"
KEY_B = "sk-provider-b-secret"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with fake_upstream() as a, fake_upstream() as b:
        yield a, b


@pytest.fixture
def fakes(
    upstreams: tuple[FakeUpstream, FakeUpstream], monkeypatch: pytest.MonkeyPatch
) -> tuple[FakeUpstream, FakeUpstream]:
    a, b = upstreams
    for fake in (a, b):
        fake.reset()
    a.api_key, b.api_key = KEY_A, KEY_B
    monkeypatch.setenv("TEST_PROVIDER_A_KEY", KEY_A)
    monkeypatch.setenv("TEST_PROVIDER_B_KEY", KEY_B)
    return a, b


def models_file(tmp_path: Path, a_url: str, b_url: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(
        f"""
[providers.alpha]
base_url = "{a_url}"
api_key_env = "TEST_PROVIDER_A_KEY"
compat = "openrouter"

[providers.beta]
base_url = "{b_url}"
api_key_env = "TEST_PROVIDER_B_KEY"
compat = "openai"

[[chain]]
provider = "alpha"
model = "a1"

[[chain]]
provider = "alpha"
model = "a2"

[[chain]]
provider = "beta"
model = "b1"
context_window = 65536
""",
        encoding="utf-8",
    )
    return path


def settings_for(tmp_path: Path, a_url: str, b_url: str) -> Settings:
    return make_settings(
        tmp_path, models_file=models_file(tmp_path, a_url, b_url), model_timeout_seconds=2.0
    )


@pytest.fixture
def settings(tmp_path: Path, fakes: tuple[FakeUpstream, FakeUpstream]) -> Settings:
    a, b = fakes
    return settings_for(tmp_path, a.base_url, b.base_url)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with served(settings) as client:
        yield client


async def stream(client: httpx.AsyncClient, body: dict[str, Any]) -> list[tuple[str, Any]]:
    return await sse_events(client, body)


async def ask(client: httpx.AsyncClient, *, streamed: bool) -> dict[str, Any]:
    """One message; the final response object (`done` when streamed)."""
    if not streamed:
        r = await client.post("/api/chat/message", json={"message": "hello", "use_tools": False})
        assert r.status_code == 200, r.text
        return r.json()
    events = await stream(client, {"message": "hello", "use_tools": False})
    assert events[-1][0] == "done", events
    return events[-1][1]


def reasons(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["model"], f["reason"]) for f in body["fallbacks"]]


def stored_fallbacks(settings: Settings) -> list[list[dict[str, str]]]:
    path = settings.database_url.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        return [
            json.loads(row[0]) for row in conn.execute("SELECT fallbacks FROM turns ORDER BY id")
        ]


NOT_SERVED = fail(
    "error",
    status=404,
    error_body={"error": {"code": 404, "message": "No endpoints found for a1."}},
)


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_model_not_served_is_skipped_and_then_not_called(
    api: httpx.AsyncClient,
    fakes: tuple[FakeUpstream, FakeUpstream],
    settings: Settings,
    streamed: bool,
) -> None:
    a, b = fakes
    a.always("a1", NOT_SERVED)
    a.always("a2", text("a2 answers"))
    first = await ask(api, streamed=streamed)
    assert first["response"] == "a2 answers"
    assert reasons(first) == [("a1", "model_unavailable")]
    assert stored_fallbacks(settings)[0] == [
        {"model": "a1", "reason": "model_unavailable", "provider": "alpha"}
    ]
    second = await ask(api, streamed=streamed)
    assert second["response"] == "a2 answers"
    assert reasons(second) == [("a1", "cooling_down")]
    assert a.models_tried() == ["a1", "a2", "a2"]  # a1 asked once, then skipped
    assert b.models_tried() == []
    assert [a.requests[0].headers["authorization"]] == [f"Bearer {KEY_A}"]
    assert len(persisted(settings)) == 2

    health = {m["id"]: m for m in (await api.get("/api/models")).json()["models"]}
    assert health["a1"]["status"] == "cooling_down"
    assert health["a1"]["provider"] == "alpha"
    assert health["a1"]["cooldown_reason"] == "model_unavailable"
    assert health["a1"]["last_failure_reason"] == "model_unavailable"
    assert health["a1"]["until"] and health["a1"]["last_failure_at"]
    assert health["a2"]["status"] == "ok" and health["a2"]["until"] is None
    assert health["b1"]["provider"] == "beta" and health["b1"]["context_window"] == 65536


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (402, {"error": {"code": 402, "message": "Insufficient credits."}}, "payment_required"),
        (
            403,
            {
                "error": {
                    "code": 403,
                    "message": 'a1 requires moderation. Your input was flagged for "hate".',
                    "metadata": {"reasons": ["hate"], "flagged_input": "hello"},
                }
            },
            "content_policy",
        ),
        (
            400,
            {"error": {"code": 400, "message": "a1 is not a valid model ID"}},
            "model_unavailable",
        ),
        (
            422,
            {"detail": [{"loc": ["body", "top_k"], "msg": "Extra inputs are not permitted"}]},
            "unsupported_request",
        ),
    ],
    ids=["402", "403-moderation", "400-invalid-model", "422"],
)
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_each_rejection_goes_to_the_next_model(
    api: httpx.AsyncClient,
    fakes: tuple[FakeUpstream, FakeUpstream],
    settings: Settings,
    streamed: bool,
    status: int,
    body: dict[str, Any],
    reason: str,
) -> None:
    a, _ = fakes
    a.script("a1", fail("error", status=status, error_body=body))
    a.script("a2", text("fine"))
    answer = await ask(api, streamed=streamed)
    assert answer["response"] == "fine"
    assert reasons(answer) == [("a1", reason)]
    assert persisted(settings) == [("hello", "fine", "a2")]


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_provider_refusing_connections_is_skipped_as_a_whole(
    tmp_path: Path, fakes: tuple[FakeUpstream, FakeUpstream], streamed: bool
) -> None:
    _, b = fakes
    b.always("b1", text("beta answers"))
    settings = settings_for(tmp_path, f"http://127.0.0.1:{free_port()}/v1", b.base_url)
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            answer = await ask(api, streamed=streamed)
            assert answer["response"] == "beta answers"
            # a2 is skipped without a second connection attempt.
            assert reasons(answer) == [("a1", "connection"), ("a2", "connection")]
            again = await ask(api, streamed=streamed)
            assert reasons(again) == [("a1", "cooling_down"), ("a2", "cooling_down")]
            health = {m["id"]: m for m in (await api.get("/api/models")).json()["models"]}
            assert health["a2"]["status"] == "cooling_down"
            assert health["a2"]["cooldown_reason"] == "connection"
    assert b.models_tried() == ["b1", "b1"]
    assert len(persisted(settings)) == 2


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_provider_rejecting_our_key_stops_only_its_models(
    api: httpx.AsyncClient,
    fakes: tuple[FakeUpstream, FakeUpstream],
    settings: Settings,
    streamed: bool,
) -> None:
    a, b = fakes
    a.api_key = "a-key-we-do-not-have"
    b.always("b1", text("beta answers"))
    answer = await ask(api, streamed=streamed)
    assert answer["response"] == "beta answers"
    assert reasons(answer) == [("a1", "auth"), ("a2", "auth")]
    assert a.models_tried() == ["a1"]
    second = await ask(api, streamed=streamed)
    assert reasons(second) == [("a1", "cooling_down"), ("a2", "cooling_down")]
    assert a.models_tried() == ["a1"]  # the provider is cooled as a whole
    assert b.models_tried() == ["b1", "b1"]
    assert KEY_A not in json.dumps([answer, second]) and KEY_B not in json.dumps(answer)
    assert len(persisted(settings)) == 2


async def test_error_event_inside_a_200_stream_resets_then_next_model(
    api: httpx.AsyncClient, fakes: tuple[FakeUpstream, FakeUpstream], settings: Settings
) -> None:
    a, _ = fakes
    a.script(
        "a1",
        fail(
            "error_in_200",
            text="one two three four",
            drop_after_tokens=2,
            error_body={"error": {"code": 502, "message": "Provider disconnected"}},
        ),
    )
    a.script("a2", text("a complete answer"))
    events = await stream(api, {"message": "hello", "use_tools": False})
    names = [name for name, _ in events]
    assert names.count("reset") == 1
    at = names.index("reset")
    assert "".join(d["content"] for n, d in events[:at] if n == "message") == "one two"
    assert events[at][1] == {"model": "a1", "reason": "server_error", "provider": "alpha"}
    after = "".join(d["content"] for n, d in events[at:] if n == "message")
    assert events[-1][0] == "done"
    assert after == events[-1][1]["response"] == "a complete answer"
    assert persisted(settings) == [("hello", "a complete answer", "a2")]


async def test_error_body_inside_a_200_json_is_a_failure(
    api: httpx.AsyncClient, fakes: tuple[FakeUpstream, FakeUpstream], settings: Settings
) -> None:
    a, _ = fakes
    a.script("a1", fail("error_in_200", error_body={"error": {"code": 502, "message": "down"}}))
    a.script("a2", text("second"))
    answer = await ask(api, streamed=False)
    assert answer["response"] == "second"
    assert reasons(answer) == [("a1", "server_error")]
    assert len(persisted(settings)) == 1


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_every_model_rejecting_is_a_502_listing_each_reason(
    api: httpx.AsyncClient,
    fakes: tuple[FakeUpstream, FakeUpstream],
    settings: Settings,
    streamed: bool,
) -> None:
    a, b = fakes
    a.script("a1", NOT_SERVED)
    a.script("a2", fail("error", status=402, error_body={"error": {"code": 402, "message": "no"}}))
    b.script(
        "b1",
        fail(
            "error",
            status=400,
            error_body={
                "error": {
                    "message": "Unsupported value: 'temperature' does not support 0.7",
                    "type": "invalid_request_error",
                    "param": "temperature",
                    "code": "unsupported_value",
                }
            },
        ),
    )
    body = {"message": "hello", "use_tools": False}
    expected = [
        {"model": "a1", "reason": "model_unavailable", "provider": "alpha"},
        {"model": "a2", "reason": "payment_required", "provider": "alpha"},
        {"model": "b1", "reason": "unsupported_request", "provider": "beta"},
    ]
    if streamed:
        events = await stream(api, body)
        assert events[-1][0] == "error"
        assert events[-1][1]["code"] == "upstream_rejected"
    else:
        r = await api.post("/api/chat/message", json=body)
        assert r.status_code == 502, r.text
        error = r.json()["error"]
        assert error["code"] == "upstream_rejected"
        assert error["details"]["models"] == expected
        assert error["request_id"]
    assert persisted(settings) == []


async def test_startup_check_asks_each_provider_and_metrics_carry_the_provider(
    api: httpx.AsyncClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    import asyncio

    a, b = fakes
    for _ in range(100):  # the check runs in the background once the app is up
        if a.listing_requests and b.listing_requests:
            break
        await asyncio.sleep(0.05)
    assert a.listing_requests[0]["authorization"] == f"Bearer {KEY_A}"
    assert b.listing_requests[0]["authorization"] == f"Bearer {KEY_B}"

    a.script("a1", NOT_SERVED)
    a.script("a2", text("fine"))
    await ask(api, streamed=False)
    metrics = (await api.get("/metrics")).text
    assert (
        'agent_model_calls_total{model="a1",outcome="model_unavailable",provider="alpha"} 1.0'
        in metrics
    )
    assert 'agent_model_calls_total{model="a2",outcome="success",provider="alpha"} 1.0' in metrics
    assert 'agent_fallbacks_total{reason="model_unavailable"} 1.0' in metrics
    assert KEY_A not in metrics and KEY_B not in metrics
