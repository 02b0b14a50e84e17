"""Issue 16: what a client is told and what is stored agree, and limits hold.

Real servers over HTTP: a private `redis-server` where Redis must hang (SIGSTOP)
or the shared one under a unique prefix, SQLite files in tmp dirs, the fake
OpenAI-compatible upstream where a turn must be slow.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_server.api.app import create_app
from agent_server.config import Settings
from agent_server.runs.budget import estimate_tokens
from tests.conftest import make_settings
from tests.support.fake_upstream import Behavior, fake_upstream, text
from tests.support.redis import delete_prefix, require_redis, unique_prefix
from tests.support.redis_server import redis_server, require_redis_binaries
from tests.support.servers import serve_in_thread


def _sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1].strip())
        if name is not None and data is not None:
            events.append((name, data))
    return events


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """SIGSTOP a process (a hung Redis: connections are accepted, nothing answers)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _redis_pid(port: int) -> int:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "server"], capture_output=True, text=True, check=True
    ).stdout
    return int(
        next(line for line in out.splitlines() if line.startswith("process_id:")).split(":")[1]
    )


# --- token budget (item 6) -------------------------------------------------------------


async def _parallel_hi(url: str, count: int, **body: Any) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post("/api/chat/message", json={"message": "hi", **body})
                for _ in range(count)
            )
        )


def _check_budget_held(responses: list[httpx.Response], budget: int, max_tokens: int) -> None:
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) + len(refused) == len(responses), [r.status_code for r in responses]
    assert all(r.json()["error"]["code"] == "budget_exceeded" for r in refused)
    # Each admitted turn reserved its estimate before running, so no more of them
    # than fit into the budget together were admitted, however they interleaved
    # (a check-then-charge admitted all 20).
    reservation = estimate_tokens(Settings(_env_file=None).system_prompt, "hi") + max_tokens
    assert 1 <= len(ok) <= budget // reservation, (len(ok), reservation)


async def test_parallel_requests_cannot_overspend_the_budget_in_process(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, daily_token_budget=200)
    with serve_in_thread(create_app(settings)) as url:
        responses = await _parallel_hi(url, 20, max_tokens=40)
    _check_budget_held(responses, 200, 40)


async def test_parallel_requests_cannot_overspend_the_budget_in_redis(tmp_path: Path) -> None:
    """Two replicas on one Redis: the reservation is atomic across both."""
    redis_url = require_redis()
    prefix = unique_prefix("budget")
    try:
        settings = [
            make_settings(
                tmp_path / name,
                daily_token_budget=200,
                redis_url=redis_url,
                redis_key_prefix=prefix,
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
            )
            for name in ("a", "b")
        ]
        with (
            serve_in_thread(create_app(settings[0])) as one,
            serve_in_thread(create_app(settings[1])) as two,
        ):
            responses = [
                *await asyncio.gather(
                    _parallel_hi(one, 10, max_tokens=40), _parallel_hi(two, 10, max_tokens=40)
                )
            ]
        _check_budget_held([r for group in responses for r in group], 200, 40)
    finally:
        delete_prefix(redis_url, prefix)


async def test_a_redis_reservation_is_replaced_by_the_real_usage(tmp_path: Path) -> None:
    import redis

    redis_url = require_redis()
    prefix = unique_prefix("settle")
    try:
        settings = make_settings(
            tmp_path, daily_token_budget=10_000, redis_url=redis_url, redis_key_prefix=prefix
        )
        with serve_in_thread(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                first = await client.post("/api/chat/message", json={"message": "hi"})
                second = await client.post("/api/chat/message", json={"message": "2+2"})
        used = sum(r.json()["usage"]["total_tokens"] for r in (first, second))
        client_ = redis.Redis.from_url(redis_url)
        key = f"{prefix}:budget:{{local}}"
        assert int(client_.get(key) or 0) == used
        assert 0 < client_.ttl(key) <= 86_400
    finally:
        delete_prefix(redis_url, prefix)


async def test_a_request_that_can_never_fit_is_refused_before_any_model_call(
    tmp_path: Path,
) -> None:
    with fake_upstream() as fake:
        settings = make_settings(
            tmp_path,
            daily_token_budget=200,
            openrouter_api_key="sk-test",
            openrouter_base_url=fake.base_url,
            agent_models=["m1"],
        )
        with serve_in_thread(create_app(settings)) as url:
            responses = await _parallel_hi(url, 3)  # max_tokens 1000 > 200
        assert fake.requests == []
    assert [r.status_code for r in responses] == [429, 429, 429]
    assert "max_tokens" in responses[0].json()["error"]["message"]
    assert int(responses[0].headers["retry-after"]) >= 1


# --- idempotency (item 5) ----------------------------------------------------------------


async def test_an_idempotency_key_replays_the_stored_turn(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "order-42"}
    first = await client.post("/api/chat/message", json={"message": "1+1"}, headers=key)
    assert first.status_code == 200
    again = await client.post("/api/chat/message", json={"message": "1+1"}, headers=key)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    session_id = first.json()["session_id"]

    # The same key on the stream route of the same (new-session) request: the same turn.
    streamed = await client.post("/api/chat/message/stream", json={"message": "1+1"}, headers=key)
    events = _sse(streamed.text)
    assert [name for name, _ in events][-1] == "done"
    assert events[-1][1]["turn_id"] == first.json()["turn_id"]

    history = (await client.get(f"/api/chat/history/{session_id}")).json()
    assert len(history["turns"]) == 1

    # Same key, different body: 422, nothing runs.
    other = await client.post("/api/chat/message", json={"message": "2+2"}, headers=key)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"

    # Same key within a session is another request than the same key without one.
    body = {"message": "1+1", "session_id": session_id}
    in_session = await client.post("/api/chat/message", json=body, headers=key)
    assert in_session.status_code == 200
    assert in_session.json()["turn_id"] != first.json()["turn_id"]
    retried = await client.post("/api/chat/message", json=body, headers=key)
    assert retried.json()["turn_id"] == in_session.json()["turn_id"]
    history = (await client.get(f"/api/chat/history/{session_id}")).json()
    assert len(history["turns"]) == 2


async def test_an_idempotency_key_is_per_principal(keyed: httpx.AsyncClient) -> None:
    from tests.conftest import ALICE, BOB, auth

    key = {"Idempotency-Key": "same-key"}
    alice = await keyed.post(
        "/api/chat/message", json={"message": "hi"}, headers={**key, **auth(ALICE)}
    )
    bob = await keyed.post(
        "/api/chat/message", json={"message": "hi"}, headers={**key, **auth(BOB)}
    )
    assert alice.status_code == bob.status_code == 200
    assert alice.json()["turn_id"] != bob.json()["turn_id"]
    assert "idempotent-replayed" not in bob.headers


async def test_an_invalid_idempotency_key_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/chat/message", json={"message": "hi"}, headers={"Idempotency-Key": "x" * 256}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_a_keyed_request_in_flight_gets_409(tmp_path: Path) -> None:
    with fake_upstream() as fake:
        fake.always("m1", text("slow answer", first_token_latency=1.5))
        settings = make_settings(
            tmp_path,
            openrouter_api_key="sk-test",
            openrouter_base_url=fake.base_url,
            agent_models=["m1"],
        )
        with serve_in_thread(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                key = {"Idempotency-Key": "in-flight"}
                first = asyncio.create_task(
                    client.post("/api/chat/message", json={"message": "hi"}, headers=key)
                )
                await asyncio.sleep(0.5)
                second = await client.post("/api/chat/message", json={"message": "hi"}, headers=key)
                assert second.status_code == 409
                assert second.json()["error"]["code"] == "request_in_progress"
                done = await first
                assert done.status_code == 200
                third = await client.post("/api/chat/message", json={"message": "hi"}, headers=key)
                assert third.json() == done.json()
        assert len(fake.requests) == 1


# --- a hung Redis (item 7) and a checkpoint write that fails after the commit (item 5) ----


@pytest.fixture
def private_redis() -> Iterator[tuple[str, int]]:
    require_redis_binaries()
    with redis_server() as port:
        yield f"redis://127.0.0.1:{port}/0", _redis_pid(port)


def _redis_settings(tmp_path: Path, redis_url: str, **overrides: Any) -> Settings:
    return make_settings(
        tmp_path, redis_url=redis_url, redis_key_prefix=unique_prefix("hang"), **overrides
    )


async def test_a_hung_redis_answers_503_within_the_request_budget(
    tmp_path: Path, private_redis: tuple[str, int]
) -> None:
    redis_url, pid = private_redis
    settings = _redis_settings(tmp_path, redis_url, daily_token_budget=100_000)
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            ok = await client.post("/api/chat/message", json={"message": "hi"})
            assert ok.status_code == 200
            session_id = ok.json()["session_id"]
            with stopped(pid):
                timings = []
                for path, body in (
                    ("/api/chat/message", {"message": "hi", "session_id": session_id}),
                    ("/api/chat/message/stream", {"message": "hi", "session_id": session_id}),
                    ("/api/chat/message", {"message": "hi"}),
                ):
                    started = time.monotonic()
                    response = await client.post(path, json=body)
                    timings.append(time.monotonic() - started)
                    assert response.status_code == 503, response.text
                    assert response.json()["error"]["code"] == "store_unavailable"
                    assert int(response.headers["retry-after"]) >= 1
                # A stream that has started (a new session: no lock to take up front)
                # ends with an `error` event just as fast.
                started = time.monotonic()
                stream = await client.post("/api/chat/message/stream", json={"message": "hi"})
                timings.append(time.monotonic() - started)
                assert stream.status_code == 200
                assert _sse(stream.text)[-1][0] == "error"
                assert _sse(stream.text)[-1][1]["code"] == "store_unavailable"
            # ~2.5 s of Redis time per request (rate limit, budget, lock, checkpoint
            # together), not the ~20 s of per-call timeouts and retries.
            assert max(timings) < 4.5, timings


async def test_a_stream_whose_redis_hangs_mid_turn_ends_promptly_and_the_turn_counts_once(
    tmp_path: Path, private_redis: tuple[str, int]
) -> None:
    """Redis hangs while the model answers: the persist node commits the turn to SQL,
    the checkpoint write after it cannot happen. The turn is stored, so the client
    gets `done` (not `error`), within the request's Redis time, and it is in history
    once; a retry with the same Idempotency-Key does not store it twice."""
    redis_url, pid = private_redis
    with fake_upstream() as fake:
        fake.always("m1", text("the answer", first_token_latency=1.0))
        settings = _redis_settings(
            tmp_path,
            redis_url,
            openrouter_api_key="sk-test",
            openrouter_base_url=fake.base_url,
            agent_models=["m1"],
        )
        with serve_in_thread(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                for path in ("/api/chat/message/stream", "/api/chat/message"):
                    session_id = (await client.post("/api/chat/session")).json()["session_id"]
                    body = {"message": "hello", "session_id": session_id}
                    key = {"Idempotency-Key": f"hang-{path}"}
                    request = asyncio.create_task(client.post(path, json=body, headers=key))
                    await asyncio.sleep(0.5)  # the turn is in the model call now
                    with stopped(pid):
                        started = time.monotonic()
                        response = await request
                        elapsed = time.monotonic() - started
                    assert response.status_code == 200, response.text
                    if path.endswith("stream"):
                        names = [name for name, _ in _sse(response.text)]
                        assert names[-1] == "done", names
                    else:
                        assert response.json()["response"] == "the answer"
                    assert elapsed < 4.5, elapsed
                    # A retry gets the stored answer, although the session lock could
                    # not be released while Redis hung: no second turn, no 409.
                    retry = await client.post("/api/chat/message", json=body, headers=key)
                    assert retry.status_code == 200, retry.text
                    assert retry.headers["idempotent-replayed"] == "true"
                    history = (await client.get(f"/api/chat/history/{session_id}")).json()
                    assert [t["response"] for t in history["turns"]] == ["the answer"]


# --- SIGTERM during a non-streaming turn (item 12) -----------------------------------------


async def test_sigterm_during_a_long_turn_answers_json_503_at_the_grace(tmp_path: Path) -> None:
    from tests.support.processes import base_env, server_process

    with fake_upstream() as fake:
        fake.always("m1", text("too late", first_token_latency=30.0))
        env = base_env(
            tmp_path / "data",
            OPENROUTER_API_KEY="sk-test",
            OPENROUTER_BASE_URL=fake.base_url,
            AGENT_MODELS="m1",
            SHUTDOWN_GRACE_SECONDS="1",
        )
        with server_process(env, tmp_path / "server.log") as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                request = asyncio.create_task(
                    client.post("/api/chat/message", json={"message": "hi"})
                )
                await asyncio.sleep(1.0)
                started = time.monotonic()
                os.killpg(server.process.pid, signal.SIGTERM)
                response = await request
                elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "shutting_down"
    # The grace (1 s) plus sse-starlette's watcher poll (0.5 s), not grace + 5.
    assert elapsed < 4.0, elapsed


# --- MAX_TOOL_CALLS_PER_ROUND ---------------------------------------------------------------


async def test_tool_calls_beyond_the_cap_are_not_run(tmp_path: Path) -> None:
    """A reply asking for 30 calls: 16 run, 14 get an error result the model reads."""
    with fake_upstream() as fake:
        fake.script(
            "m1",
            Behavior(kind="tool_call", tool_calls=[("calculator", {"expression": "1+1"})] * 30),
            text("done"),
        )
        settings = make_settings(
            tmp_path,
            openrouter_api_key="sk-test",
            openrouter_base_url=fake.base_url,
            agent_models=["m1"],
        )
        with serve_in_thread(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                response = await client.post("/api/chat/message", json={"message": "add lots"})
        assert response.status_code == 200, response.text
        assert response.json()["tools_used"] == ["calculator"]
        results = [m for m in fake.requests[-1].body["messages"] if m["role"] == "tool"]
    assert len(results) == 30
    refused = [m for m in results if "at most 16 tool calls" in str(m["content"])]
    assert len(refused) == 14
    assert all('"result": 2' in str(m["content"]) for m in results[:16])


# --- a turn cut off by the client leaves no ghost (item 4's class) -----------------------------


async def test_a_stream_the_client_abandons_leaves_nothing_in_the_next_context(
    tmp_path: Path,
) -> None:
    """A guard, not a reproduction (this one held before issue 16): a run cancelled
    mid-answer must not become context either."""
    with fake_upstream() as fake:
        settings = make_settings(
            tmp_path,
            openrouter_api_key="sk-test",
            openrouter_base_url=fake.base_url,
            agent_models=["m1"],
        )
        with serve_in_thread(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                fake.always("m1", text("first answer"))
                first = await client.post("/api/chat/message", json={"message": "first question"})
                session_id = first.json()["session_id"]

                fake.always("m1", text("ghost " * 40, tokens_per_second=20))
                body = {"message": "ghost question", "session_id": session_id}
                async with client.stream("POST", "/api/chat/message/stream", json=body) as stream:
                    async for line in stream.aiter_lines():
                        if line.startswith("event: message"):
                            break  # the answer is streaming: hang up

                fake.always("m1", text("third answer"))
                for _ in range(50):  # the cancelled run frees the session shortly
                    third = await client.post(
                        "/api/chat/message",
                        json={"message": "third question", "session_id": session_id},
                    )
                    if third.status_code != 409:
                        break
                    await asyncio.sleep(0.1)
                assert third.status_code == 200, third.text
        sent = [str(m.get("content")) for m in fake.requests[-1].body["messages"]]
    assert "first question" in sent
    assert not [t for t in sent if "ghost" in t], sent
