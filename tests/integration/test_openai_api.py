"""The OpenAI-compatible surface (`/v1`) through real consumers: the `openai` SDK (sync
and async, whole and streamed, raw responses for our headers) and LangChain's
`ChatOpenAI`, against the real app over HTTP.

Three servers per module: one on the offline model (the calculator answers), one over
the fake OpenAI-compatible upstream with a chain of two models (what the model saw,
failover, pinning, sessions), one with a low rate limit. Cooldowns would carry one
test's failures into the next on the shared chain server, so its failure threshold is
out of reach and no test there scripts a rate limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from agent_server.api.app import create_app
from agent_server.config import Settings
from agent_server.llm import build_model_chain
from tests.conftest import ALICE, BOB, auth, make_settings
from tests.support.fake_upstream import FakeUpstream, fail, fake_upstream, text, tool_call
from tests.support.redis import delete_prefix, require_redis, unique_prefix
from tests.support.servers import serve_in_thread

CALCULATION = "Calculate 10 * 20"
ANSWER = "10 * 20 = 200"
MODELS = ["m1", "m2"]
UPSTREAM_KEY = "sk-upstream-secret-123"
ORIGIN = "https://chat.example"


def sdk(url: str, key: str = ALICE) -> openai.OpenAI:
    """No retries: the SDK retries 409, 429 and 5xx by default, which would hide them."""
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def async_sdk(url: str, key: str = ALICE) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def sessions_of(url: str, key: str = ALICE) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/chat/sessions", headers=auth(key), params={"limit": 100})
    assert r.status_code == 200, r.text
    return r.json()["sessions"]


def history_of(url: str, session_id: str, key: str = ALICE) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/chat/history/{session_id}", headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()["turns"]


def wait_for_turns(url: str, session_id: str, count: int) -> list[dict[str, Any]]:
    """A run that goes on after its stream ended records its turn a moment later."""
    deadline = time.monotonic() + 20
    while len(turns := history_of(url, session_id)) < count:
        assert time.monotonic() < deadline, f"session {session_id} has {len(turns)} turns"
        time.sleep(0.05)
    return turns


def prompt_of(fake: FakeUpstream, index: int = -1) -> list[tuple[str, str]]:
    """What one recorded model call saw, without our system prompt."""
    messages = fake.requests[index].body["messages"]
    assert messages[0]["role"] == "system"  # SYSTEM_PROMPT
    return [(m["role"], m["content"]) for m in messages[1:]]


# --- servers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The offline model; two tenants (ALICE, BOB)."""
    settings = make_settings(
        tmp_path_factory.mktemp("offline"), agent_api_keys=[ALICE, BOB], cors_origins=[ORIGIN]
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


def chain_settings(tmp_path: Path, upstream: FakeUpstream, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "agent_api_keys": [ALICE, BOB],
        "openrouter_api_key": UPSTREAM_KEY,
        "openrouter_base_url": upstream.base_url,
        "agent_models": MODELS,
        "model_timeout_seconds": 5.0,
        "failure_threshold": 1000,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[str]:
    settings = chain_settings(tmp_path_factory.mktemp("chain"), upstream)
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
def fake(upstream: FakeUpstream) -> FakeUpstream:
    upstream.reset()
    return upstream


# --- models --------------------------------------------------------------------------


def test_models_list_the_agent_and_each_pinned_chain_model(offline: str, chain: str) -> None:
    assert [m.id for m in sdk(offline).models.list()] == ["agent"]
    client = sdk(chain)
    assert [m.id for m in client.models.list()] == ["agent", "agent:m1", "agent:m2"]
    model = client.models.retrieve("agent:m2")
    assert (model.id, model.object, model.owned_by) == ("agent:m2", "model", "agent-server")
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o")
    assert caught.value.code == "model_not_found"


# --- the offline model: the calculator through every consumer --------------------------


def test_sync_sdk_whole_answer_with_the_tool_result_and_agent_headers(offline: str) -> None:
    before = len(sessions_of(offline))
    raw = sdk(offline).chat.completions.with_raw_response.create(
        model="agent", messages=[user(CALCULATION)]
    )
    assert raw.headers["x-model-used"] == "offline"
    assert raw.headers["x-fallbacks"] == ""
    assert raw.headers["x-degraded"] == "false"
    assert "x-session-id" not in raw.headers  # stateless
    answer = raw.parse()
    assert answer.object == "chat.completion"
    assert answer.model == "offline"  # the model that answered, not "agent"
    assert answer.choices[0].message.content == ANSWER
    assert answer.choices[0].message.tool_calls is None  # the agent's tools are its own
    assert answer.choices[0].finish_reason == "stop"
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert len(sessions_of(offline)) == before  # no session left behind


def test_sync_sdk_stream_with_usage_and_no_agent_events(offline: str) -> None:
    chunks = list(
        sdk(offline).chat.completions.create(
            model="agent",
            messages=[user(CALCULATION)],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in with_choices[1:])
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == ANSWER
    assert with_choices[-1].choices[0].finish_reason == "stop"
    assert with_choices[-1].model == "offline"
    assert not any(c.choices[0].delta.tool_calls for c in with_choices)
    assert not any("agent_event" in (c.model_extra or {}) for c in chunks)  # strict clients
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens > 0


def test_stream_without_include_usage_has_no_usage_chunk(offline: str) -> None:
    chunks = list(
        sdk(offline).chat.completions.create(
            model="agent", messages=[user(CALCULATION)], stream=True
        )
    )
    assert all(c.choices and c.usage is None for c in chunks)


async def test_async_sdk_whole_and_streamed(offline: str) -> None:
    client = async_sdk(offline)
    raw = await client.chat.completions.with_raw_response.create(
        model="agent", messages=[user(CALCULATION)]
    )
    assert raw.headers["x-model-used"] == "offline"
    assert raw.parse().choices[0].message.content == ANSWER
    stream = await client.chat.completions.create(
        model="agent", messages=[user(CALCULATION)], stream=True
    )
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == ANSWER
    await client.close()


def test_langchain_chat_openai_invokes_and_streams(offline: str) -> None:
    llm = ChatOpenAI(base_url=f"{offline}/v1", api_key=ALICE, model="agent", max_retries=0)
    message = llm.invoke(CALCULATION)
    assert message.content == ANSWER
    assert message.response_metadata["model_name"] == "offline"
    assert message.usage_metadata is not None and message.usage_metadata["total_tokens"] > 0
    streamed = list(llm.stream([HumanMessage(CALCULATION)]))
    assert len(streamed) > 2  # token by token, not one blob
    assert "".join(str(c.content) for c in streamed) == ANSWER
    assert not any(c.tool_calls or c.tool_call_chunks for c in streamed)


def test_agent_events_add_tool_chunks_for_clients_that_ask(offline: str) -> None:
    chunks = list(
        sdk(offline).chat.completions.create(
            model="agent",
            messages=[user(CALCULATION)],
            stream=True,
            extra_body={"agent_events": True},
        )
    )
    events = [c.model_extra["agent_event"] for c in chunks if "agent_event" in c.model_extra]
    assert [e["event"] for e in events] == ["tool_start", "tool_end"]
    assert events[0]["name"] == events[1]["name"] == "calculator"
    assert events[1]["status"] == "success" and "200" in events[1]["output"]
    text_chunks = [c for c in chunks if "agent_event" not in c.model_extra]
    assert "".join(c.choices[0].delta.content or "" for c in text_chunks) == ANSWER
    for chunk in chunks:  # still valid chunks for a strict parser
        assert chunk.choices and chunk.object == "chat.completion.chunk"


def test_harmless_fields_are_accepted(offline: str) -> None:
    answer = sdk(offline).chat.completions.create(
        model="agent",
        messages=[user(CALCULATION)],
        top_p=0.9,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        seed=7,
        stop=["END"],
        temperature=0.2,
        max_completion_tokens=200,
        user="end-user-42",
        tool_choice="none",
        response_format={"type": "text"},
        n=1,
    )
    assert answer.choices[0].message.content == ANSWER


def test_browser_chat_uis_may_send_and_read_the_session_header(offline: str) -> None:
    preflight = httpx.options(
        f"{offline}/v1/chat/completions",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-session-id",
        },
    )
    assert preflight.status_code == 200
    assert "x-session-id" in preflight.headers["access-control-allow-headers"].lower()
    r = httpx.post(
        f"{offline}/v1/chat/completions",
        headers={**auth(ALICE), "Origin": ORIGIN, "X-Session-ID": "new"},
        json={"model": "agent", "messages": [user(CALCULATION)]},
        timeout=30,
    )
    assert r.status_code == 200 and r.headers["x-session-id"]
    exposed = r.headers["access-control-expose-headers"].lower().split(", ")
    assert {"x-session-id", "x-model-used", "x-fallbacks", "x-degraded"} <= set(exposed)


# --- errors as the SDK's exceptions -------------------------------------------------


def test_wrong_key_is_authentication_error(offline: str) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(offline, key="sk-not-a-key-000000000").chat.completions.create(
            model="agent", messages=[user("hi")]
        )
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        sdk(offline, key="sk-not-a-key-000000000").models.list()


def test_unknown_model_is_not_found(offline: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(offline).chat.completions.create(model="gpt-4o", messages=[user("hi")])
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.NotFoundError):  # only `agent` when the chain has one model
        sdk(offline).chat.completions.create(model="agent:offline", messages=[user("hi")])


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        (
            {"messages": [user("x"), {"role": "tool", "content": "42", "tool_call_id": "c1"}]},
            "messages[1].role",
        ),
        ({"messages": [user([{"type": "text", "text": "what is it?"}, IMAGE])]}, None),
        (
            {
                "messages": [
                    user("x"),
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    },
                    user("y"),
                ]
            },
            "messages[1].tool_calls",
        ),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"top_p": 1.5}, "top_p"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, None),
    ],
)
def test_meaning_changing_or_invalid_fields_are_bad_request(
    offline: str, fields: dict[str, Any], param: str | None
) -> None:
    body: dict[str, Any] = {"model": "agent", "messages": [user("hi")], **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(offline).chat.completions.create(**body)
    error = caught.value
    assert error.status_code == 400  # also where FastAPI says 422
    assert error.type == "invalid_request_error"
    if param is not None:
        assert error.param == param
    assert isinstance(error.body, dict) and set(error.body) == {"message", "type", "param", "code"}


def test_errors_leave_in_openai_shape_for_raw_clients(offline: str) -> None:
    r = httpx.post(
        f"{offline}/v1/chat/completions",
        content=b'{"model": "agent", "messages": [',
        headers={**auth(ALICE), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "message": "request body is not valid JSON",
            "type": "invalid_request_error",
            "param": None,
            "code": "malformed_json",
        }
    }
    assert r.headers["x-request-id"]
    r = httpx.get(f"{offline}/v1/nothing-here", headers=auth(ALICE))
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    # OpenAI's reference is the schema of /v1, not ours (which holds our error shape).
    assert not [p for p in httpx.get(f"{offline}/openapi.json").json()["paths"] if "/v1" in p]
    # /api keeps its own shape.
    r = httpx.get(f"{offline}/api/chat/sessions", headers=auth("sk-wrong-0000000000"))
    assert r.status_code == 401 and set(r.json()["error"]) == {"code", "message", "request_id"}


def test_another_tenants_session_is_not_found(offline: str) -> None:
    raw = sdk(offline, ALICE).chat.completions.with_raw_response.create(
        model="agent", messages=[user(CALCULATION)], extra_headers={"X-Session-ID": "new"}
    )
    session_id = raw.headers["x-session-id"]
    assert session_id in {s["session_id"] for s in sessions_of(offline, ALICE)}
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as caught:
            sdk(offline, BOB).chat.completions.create(
                model="agent",
                messages=[user("what did Alice ask?")],
                extra_headers={"X-Session-ID": session_id},
                stream=stream,
            )
        assert caught.value.code == "session_not_found"
    assert session_id not in {s["session_id"] for s in sessions_of(offline, BOB)}
    assert len(history_of(offline, session_id, ALICE)) == 1  # Bob added nothing
    with pytest.raises(openai.NotFoundError):
        sdk(offline, ALICE).chat.completions.create(
            model="agent",
            messages=[user("hi")],
            extra_headers={"X-Session-ID": "00000000-0000-4000-8000-000000000000"},
        )


def test_a_tool_needing_approval_is_conflict(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, agent_api_keys=[ALICE], approval_tools=["calculator"])
    with serve_in_thread(create_app(settings)) as url:
        client = sdk(url)
        for stream in (False, True):
            with pytest.raises(openai.ConflictError) as caught:
                client.chat.completions.create(
                    model="agent", messages=[user(CALCULATION)], stream=stream
                )
            assert caught.value.code == "approval_required"
            assert "use a session" in caught.value.message
        raw = client.chat.completions.with_raw_response.create
        with pytest.raises(openai.ConflictError) as caught:
            raw(model="agent", messages=[user(CALCULATION)], extra_headers={"X-Session-ID": "new"})
        [session] = sessions_of(url)
        assert f"session {session['session_id']} waits" in caught.value.message


# --- over the fake upstream: what the model saw ----------------------------------------


def test_stateless_multi_turn_sends_the_conversation_as_given(
    chain: str, fake: FakeUpstream
) -> None:
    fake.script("m1", text("I am fine."))
    before = len(sessions_of(chain))
    conversation = [
        {"role": "system", "content": "Answer in one short sentence."},
        user("Hello, I am Ada."),
        {"role": "assistant", "content": "Hello Ada."},
        user([{"type": "text", "text": "How are "}, {"type": "text", "text": "you?"}]),
    ]
    answer = sdk(chain).chat.completions.create(model="agent", messages=conversation)
    assert answer.choices[0].message.content == "I am fine."
    assert answer.model == "m1"
    assert prompt_of(fake) == [
        ("system", "Answer in one short sentence."),
        ("user", "Hello, I am Ada."),
        ("assistant", "Hello Ada."),
        ("user", "How are you?"),
    ]
    # The next turn of the same client: the whole conversation again, nothing kept.
    fake.script("m1", text("You are Ada."))
    conversation += [{"role": "assistant", "content": "I am fine."}, user("Who am I?")]
    answer = sdk(chain).chat.completions.create(model="agent", messages=conversation)
    assert answer.choices[0].message.content == "You are Ada."
    assert prompt_of(fake)[1:] == [
        ("user", "Hello, I am Ada."),
        ("assistant", "Hello Ada."),
        ("user", "How are you?"),
        ("assistant", "I am fine."),
        ("user", "Who am I?"),
    ]
    assert len(sessions_of(chain)) == before


def test_session_continues_without_duplicated_context(chain: str, fake: FakeUpstream) -> None:
    client = sdk(chain)
    fake.script("m1", text("Nice to meet you, Ada."), text("Your name is Ada."))
    first = client.chat.completions.with_raw_response.create(
        model="agent",
        messages=[user("My name is Ada.")],
        extra_headers={"X-Session-ID": "new"},
    )
    session_id = first.headers["x-session-id"]
    assert first.parse().choices[0].message.content == "Nice to meet you, Ada."
    # An OpenAI client resends everything; the session already holds all but the last.
    second = client.chat.completions.with_raw_response.create(
        model="agent",
        messages=[
            user("My name is Ada."),
            {"role": "assistant", "content": "Nice to meet you, Ada."},
            user("What is my name?"),
        ],
        extra_headers={"X-Session-ID": session_id},
    )
    assert second.headers["x-session-id"] == session_id
    assert second.parse().choices[0].message.content == "Your name is Ada."
    assert prompt_of(fake) == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What is my name?"),
    ]
    listed = {s["session_id"]: s for s in sessions_of(chain)}
    assert listed[session_id]["turn_count"] == 2
    turns = history_of(chain, session_id)
    assert [(t["user_message"], t["response"], t["model_used"]) for t in turns] == [
        ("My name is Ada.", "Nice to meet you, Ada.", "m1"),
        ("What is my name?", "Your name is Ada.", "m1"),
    ]
    # Streamed, on the same session: the header comes back before the first chunk.
    fake.script("m1", text("Still Ada."))
    with client.chat.completions.with_streaming_response.create(
        model="agent",
        messages=[user("And now?")],
        stream=True,
        extra_headers={"X-Session-ID": session_id},
    ) as response:
        assert response.headers["x-session-id"] == session_id
        parts = [c.choices[0].delta.content or "" for c in response.parse() if c.choices]
    assert "".join(parts) == "Still Ada."
    assert prompt_of(fake)[-1] == ("user", "And now?")
    assert len(prompt_of(fake)) == 5
    assert len(wait_for_turns(chain, session_id, 3)) == 3


def test_a_new_session_starts_from_the_conversation_given(chain: str, fake: FakeUpstream) -> None:
    fake.script("m1", text("You are Ada."))
    raw = sdk(chain).chat.completions.with_raw_response.create(
        model="agent",
        messages=[
            {"role": "system", "content": "Be brief."},
            user("I am Ada."),
            {"role": "assistant", "content": "Hello Ada."},
            user("Who am I?"),
        ],
        extra_headers={"X-Session-ID": "new"},
    )
    assert raw.parse().choices[0].message.content == "You are Ada."
    assert prompt_of(fake) == [
        ("system", "Be brief."),
        ("user", "I am Ada."),
        ("assistant", "Hello Ada."),
        ("user", "Who am I?"),
    ]
    [turn] = history_of(chain, raw.headers["x-session-id"])
    assert (turn["user_message"], turn["response"]) == ("Who am I?", "You are Ada.")


def test_a_rest_session_continues_on_v1(chain: str, fake: FakeUpstream) -> None:
    r = httpx.post(f"{chain}/api/chat/session", headers=auth(ALICE), json={})
    session_id = r.json()["session_id"]
    fake.script("m1", text("From REST."), text("From v1."))
    r = httpx.post(
        f"{chain}/api/chat/message",
        headers=auth(ALICE),
        json={"session_id": session_id, "message": "first"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    sdk(chain).chat.completions.create(
        model="agent",
        messages=[user("second")],
        extra_headers={"X-Session-ID": session_id},
    )
    assert prompt_of(fake) == [("user", "first"), ("assistant", "From REST."), ("user", "second")]


def test_a_session_needs_the_new_user_message_last(chain: str, fake: FakeUpstream) -> None:
    r = httpx.post(f"{chain}/api/chat/session", headers=auth(ALICE), json={})
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(chain).chat.completions.create(
            model="agent",
            messages=[user("hi"), {"role": "assistant", "content": "hello"}],
            extra_headers={"X-Session-ID": r.json()["session_id"]},
        )
    assert caught.value.param == "messages"
    assert fake.requests == []


def test_the_agents_own_tool_calls_stay_inside(chain: str, fake: FakeUpstream) -> None:
    fake.script("m1", tool_call("calculator", {"expression": "10 * 20"}), text("It is 200."))
    answer = sdk(chain).chat.completions.create(model="agent", messages=[user(CALCULATION)])
    message = answer.choices[0].message
    assert (message.content, message.tool_calls, answer.choices[0].finish_reason) == (
        "It is 200.",
        None,
        "stop",
    )
    tool_results = [m for m in fake.requests[1].body["messages"] if m["role"] == "tool"]
    assert len(tool_results) == 1 and "200" in tool_results[0]["content"]
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == sum(
        usage["prompt_tokens"] for usage in (fake_usage(r) for r in fake.requests)
    )


def fake_usage(request: Any) -> dict[str, int]:
    """The usage the fake reported for a recorded request (it counts prompt words)."""
    words = sum(len(str(m.get("content") or "").split()) for m in request.body["messages"])
    return {"prompt_tokens": words}


def test_pinned_model_is_tried_first(chain: str, fake: FakeUpstream) -> None:
    fake.script("m2", text("m2 here."))
    raw = sdk(chain).chat.completions.with_raw_response.create(
        model="agent:m2", messages=[user("hi")]
    )
    assert fake.models_tried() == ["m2"]
    assert raw.headers["x-model-used"] == "m2"
    assert raw.parse().model == "m2"
    # The pinned model failing falls back to the rest of the chain.
    fake.requests.clear()
    fake.script("m2", fail("server_error", status=502))
    fake.script("m1", text("m1 stood in."))
    raw = sdk(chain).chat.completions.with_raw_response.create(
        model="agent:m2", messages=[user("hi")]
    )
    assert fake.models_tried() == ["m2", "m1"]
    assert raw.headers["x-model-used"] == "m1"
    assert raw.headers["x-fallbacks"] == "m2:server_error"


def test_temperature_and_max_tokens_reach_the_model(chain: str, fake: FakeUpstream) -> None:
    sdk(chain).chat.completions.create(
        model="agent", messages=[user("hi")], temperature=0.3, max_tokens=55
    )
    body = fake.requests[-1].body
    assert body["temperature"] == 0.3
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 55


def test_sampling_fields_reach_the_model(chain: str, fake: FakeUpstream) -> None:
    sdk(chain).chat.completions.create(
        model="agent",
        messages=[user("hi")],
        top_p=0.5,
        seed=7,
        stop=["END"],
        presence_penalty=0.25,
        frequency_penalty=-0.5,
    )
    body = fake.requests[-1].body
    assert body["top_p"] == 0.5 and body["seed"] == 7 and body["stop"] == ["END"]
    assert body["presence_penalty"] == 0.25 and body["frequency_penalty"] == -0.5


async def test_model_chain_passes_sampling_to_the_upstream(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    chain = build_model_chain(chain_settings(tmp_path, fake, agent_models=["m1"]))
    try:
        for stream in (False, True):
            await chain.ainvoke(
                [HumanMessage("hi")],
                tools=[],
                temperature=0.1,
                stream=stream,
                sampling={"top_p": 0.3, "seed": 11, "stop": ["STOP"], "temperature": 1.9},
            )
        await chain.ainvoke([HumanMessage("hi")], tools=[])
    finally:
        await chain.aclose()
    for request in fake.requests[:2]:
        assert request.body["top_p"] == 0.3 and request.body["seed"] == 11
        assert request.body["stop"] == ["STOP"]
        assert request.body["temperature"] == 0.1  # the explicit one wins
    assert [r.stream for r in fake.requests[:2]] == [False, True]
    assert not {"top_p", "seed", "stop"} & set(fake.requests[2].body)  # only when given


# --- upstream failures ---------------------------------------------------------------


def test_every_model_failing_is_internal_server_error(chain: str, fake: FakeUpstream) -> None:
    for stream in (False, True):
        fake.script("m1", fail("server_error", status=500))
        fake.script("m2", fail("server_error", status=502))
        with pytest.raises(openai.InternalServerError) as caught:
            sdk(chain).chat.completions.create(model="agent", messages=[user("hi")], stream=stream)
        assert caught.value.status_code == 503
        assert caught.value.code == "upstream_unavailable"
        assert caught.value.type == "server_error"
    assert fake.models_tried() == ["m1", "m2", "m1", "m2"]


def test_failover_before_the_first_token_is_invisible(chain: str, fake: FakeUpstream) -> None:
    fake.script("m1", fail("server_error", status=503))
    fake.script("m2", text("m2 took over."))
    chunks = list(
        sdk(chain).chat.completions.create(model="agent", messages=[user("hi")], stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "m2 took over."
    assert chunks[-1].model == "m2"
    assert not any("agent_event" in (c.model_extra or {}) for c in chunks)
    # With agent events the client sees the hop.
    fake.script("m1", fail("server_error", status=503))
    fake.script("m2", text("m2 again."))
    chunks = list(
        sdk(chain).chat.completions.create(
            model="agent", messages=[user("hi")], stream=True, extra_body={"agent_events": True}
        )
    )
    events = [c.model_extra["agent_event"] for c in chunks if "agent_event" in c.model_extra]
    assert events == [{"event": "fallback", "from": "m1", "to": "m2", "reason": "server_error"}]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "m2 again."


def test_failover_after_tokens_ends_the_stream_with_stream_reset(
    chain: str, fake: FakeUpstream
) -> None:
    r = httpx.post(f"{chain}/api/chat/session", headers=auth(ALICE), json={})
    session_id = r.json()["session_id"]
    fake.script("m1", fail("drop", text="one two three four five", drop_after_tokens=2))
    fake.script("m2", text("The whole answer."))
    received: list[str] = []
    stream = sdk(chain).chat.completions.create(
        model="agent",
        messages=[user("hi")],
        stream=True,
        extra_headers={"X-Session-ID": session_id},
    )
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert caught.value.code == "stream_reset"
    assert "".join(received) == "one two"
    # The turn ran on with the next model and is in the session's history.
    [turn] = wait_for_turns(chain, session_id, 1)
    assert (turn["response"], turn["model_used"]) == ("The whole answer.", "m2")
    assert [f["model"] for f in turn["fallbacks"]] == ["m1"]


def test_a_failure_after_the_stream_started_is_an_error_chunk(
    chain: str, fake: FakeUpstream
) -> None:
    # m1 answers nothing for longer than SSE_PING_SECONDS (1 s in tests), so the
    # stream has started (200) when every model has failed.
    fake.script("m1", fail("drop", drop_after_tokens=0, first_token_latency=1.5))
    fake.script("m2", fail("server_error", status=500))
    with pytest.raises(openai.APIError) as caught:
        list(sdk(chain).chat.completions.create(model="agent", messages=[user("hi")], stream=True))
    assert not isinstance(caught.value, openai.APIStatusError)  # no HTTP error: a chunk
    assert caught.value.code == "upstream_unavailable"
    assert fake.models_tried() == ["m1", "m2"]


def test_a_client_that_leaves_mid_stream_cancels_the_run(chain: str, fake: FakeUpstream) -> None:
    r = httpx.post(f"{chain}/api/chat/session", headers=auth(ALICE), json={})
    session_id = r.json()["session_id"]
    client = sdk(chain)
    headers = {"X-Session-ID": session_id}
    fake.script("m1", text("Hello."))
    client.chat.completions.create(model="agent", messages=[user("hi")], extra_headers=headers)
    words = " ".join(f"w{i}" for i in range(40))
    fake.script("m1", text(words, tokens_per_second=5))
    stream = client.chat.completions.create(
        model="agent", messages=[user("long")], stream=True, extra_headers=headers
    )
    first = next(iter(stream))
    assert first.choices[0].delta.content
    stream.close()
    # The session frees at once (no 8 s wait for the slow answer), with no turn written.
    fake.script("m1", text("Short."))
    deadline = time.monotonic() + 5
    while True:
        try:
            answer = client.chat.completions.create(
                model="agent", messages=[user("short")], extra_headers=headers
            )
            break
        except openai.ConflictError:
            assert time.monotonic() < deadline, "the abandoned run still holds the session"
            time.sleep(0.1)
    assert answer.choices[0].message.content == "Short."
    assert [t["user_message"] for t in history_of(chain, session_id)] == ["hi", "short"]
    # The abandoned turn is no context.
    assert prompt_of(fake) == [("user", "hi"), ("assistant", "Hello."), ("user", "short")]


def test_an_abandoned_first_turn_is_no_context(chain: str, fake: FakeUpstream) -> None:
    r = httpx.post(f"{chain}/api/chat/session", headers=auth(ALICE), json={})
    headers = {"X-Session-ID": r.json()["session_id"]}
    client = sdk(chain)
    fake.script("m1", text(" ".join(f"w{i}" for i in range(40)), tokens_per_second=5))
    stream = client.chat.completions.create(
        model="agent", messages=[user("long")], stream=True, extra_headers=headers
    )
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            client.chat.completions.create(
                model="agent", messages=[user("short")], extra_headers=headers
            )
            break
        except openai.ConflictError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert prompt_of(fake) == [("user", "short")]


async def test_a_busy_session_is_conflict(chain: str, fake: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=chain, headers=auth(ALICE)) as rest:
        session_id = (await rest.post("/api/chat/session", json={})).json()["session_id"]
    fake.script("m1", text("Slow answer.", first_token_latency=1.5))
    client = async_sdk(chain)
    headers = {"X-Session-ID": session_id}
    first = asyncio.create_task(
        client.chat.completions.create(
            model="agent", messages=[user("slow")], extra_headers=headers
        )
    )
    deadline = time.monotonic() + 10
    while not fake.requests:  # the first run holds the session
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    for stream in (False, True):
        with pytest.raises(openai.ConflictError) as caught:
            await client.chat.completions.create(
                model="agent", messages=[user("too soon")], extra_headers=headers, stream=stream
            )
        assert caught.value.code == "session_busy"
    assert (await first).choices[0].message.content == "Slow answer."
    await client.close()
    async with httpx.AsyncClient(base_url=chain, headers=auth(ALICE)) as rest:
        turns = (await rest.get(f"/api/chat/history/{session_id}")).json()["turns"]
    assert [t["user_message"] for t in turns] == ["slow"]


def test_over_redis_whole_streamed_and_a_session(tmp_path: Path) -> None:
    """Run records, event logs, slots and checkpoints in Redis, as replicas use them."""
    url = require_redis()
    prefix = unique_prefix("openai")
    settings = make_settings(
        tmp_path, agent_api_keys=[ALICE], redis_url=url, redis_key_prefix=prefix
    )
    try:
        with serve_in_thread(create_app(settings)) as server:
            client = sdk(server)
            answer = client.chat.completions.create(model="agent", messages=[user(CALCULATION)])
            assert answer.choices[0].message.content == ANSWER
            with client.chat.completions.with_streaming_response.create(
                model="agent",
                messages=[user(CALCULATION)],
                stream=True,
                extra_headers={"X-Session-ID": "new"},
            ) as response:
                session_id = response.headers["x-session-id"]
                parts = [c.choices[0].delta.content or "" for c in response.parse() if c.choices]
            assert "".join(parts) == ANSWER
            client.chat.completions.create(
                model="agent",
                messages=[user("what is 2 + 3?")],
                extra_headers={"X-Session-ID": session_id},
            )
            turns = wait_for_turns(server, session_id, 2)
            assert [t["user_message"] for t in turns] == [CALCULATION, "what is 2 + 3?"]
            assert len(sessions_of(server)) == 1  # the stateless one left nothing
    finally:
        delete_prefix(url, prefix)


def test_over_redis_a_slow_model_outlasts_the_requests_redis_time(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """Waiting for a slow run's events is not Redis time: a first token later than
    REDIS_REQUEST_TIMEOUT_SECONDS is no store_unavailable (it was, whole and streamed)."""
    url = require_redis()
    prefix = unique_prefix("openai-slow")
    settings = chain_settings(
        tmp_path,
        fake,
        agent_models=["m1"],
        redis_url=url,
        redis_key_prefix=prefix,
        redis_request_timeout_seconds=0.5,
    )
    fake.always("m1", text("Worth the wait.", first_token_latency=1.5))
    try:
        with serve_in_thread(create_app(settings)) as server:
            client = sdk(server)
            answer = client.chat.completions.create(model="agent", messages=[user("hi")])
            assert answer.choices[0].message.content == "Worth the wait."
            chunks = client.chat.completions.create(
                model="agent", messages=[user("hi")], stream=True
            )
            parts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
            assert "".join(parts) == "Worth the wait."
    finally:
        delete_prefix(url, prefix)


# --- limits and budgets ------------------------------------------------------------


def test_rate_limit_is_rate_limit_error_with_retry_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, agent_api_keys=[ALICE], rate_limit_per_minute=2)
    with serve_in_thread(create_app(settings)) as url:
        client = sdk(url)
        for _ in range(2):
            client.chat.completions.create(model="agent", messages=[user(CALCULATION)])
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="agent", messages=[user(CALCULATION)])
        assert caught.value.code == "rate_limited"
        assert int(caught.value.response.headers["retry-after"]) >= 1
        with pytest.raises(openai.RateLimitError):  # streaming too, before any chunk
            client.chat.completions.create(model="agent", messages=[user(CALCULATION)], stream=True)
        assert [m.id for m in client.models.list()] == ["agent"]  # listing is not limited


def test_daily_token_budget_is_rate_limit_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, agent_api_keys=[ALICE], daily_token_budget=600)
    with serve_in_thread(create_app(settings)) as url:
        client = sdk(url)
        with pytest.raises(openai.RateLimitError) as caught:  # more than a day's budget
            client.chat.completions.create(model="agent", messages=[user("hi")], max_tokens=900)
        assert caught.value.code == "budget_exceeded"
        answered = 0
        with pytest.raises(openai.RateLimitError) as caught:  # the turns' tokens add up
            for _ in range(10):
                client.chat.completions.create(
                    model="agent", messages=[user(CALCULATION)], max_tokens=50
                )
                answered += 1
        assert answered >= 2
        error = caught.value
        assert (error.code, error.type) == ("budget_exceeded", "insufficient_quota")
        assert int(error.response.headers["retry-after"]) > 3600  # the day's end
        with pytest.raises(openai.RateLimitError):  # streamed too, before any chunk
            client.chat.completions.create(
                model="agent", messages=[user(CALCULATION)], max_tokens=50, stream=True
            )
