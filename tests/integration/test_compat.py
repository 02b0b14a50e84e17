"""Compat profiles against a fake upstream playing each server's quirk, through the real
langchain-openai path (and once through the whole app): each test also shows the
quirk biting without the fix, so it cannot pass by accident."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.messages.ai import add_ai_message_chunks

from agent_server.api.app import create_app
from agent_server.llm.compat import PROFILES, Compat
from agent_server.llm.errors import Reason, classify
from agent_server.llm.openai_compatible import make_openai_compatible_model
from agent_server.llm.providers import Provider
from agent_server.tools.calculator import make_calculator_tool
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, fake_upstream, text, tool_call
from tests.support.servers import serve_in_thread


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """Own HTTP client per test: langchain-openai's shared one is bound to one loop."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


@pytest.fixture
def fake(upstream: FakeUpstream) -> FakeUpstream:
    upstream.reset()
    return upstream


def model_for(fake: FakeUpstream, compat: Compat, http: httpx.AsyncClient, tmp_path: Path) -> Any:
    settings = make_settings(tmp_path, model_timeout_seconds=5.0)
    provider = Provider(name="local", base_url=fake.base_url, compat=compat)
    return make_openai_compatible_model("m", settings, provider=provider, http_async_client=http)


TOOL_HISTORY = [
    HumanMessage("what is 2+3?"),
    AIMessage(
        content="",
        tool_calls=[{"id": "call_1", "name": "calculator", "args": {"expression": "2+3"}}],
    ),
    ToolMessage(content='{"success": true, "result": 5}', tool_call_id="call_1"),
]


async def test_llamacpp_gets_max_tokens_not_max_completion_tokens(
    fake: FakeUpstream, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    fake.always("m", text("ok"))
    await model_for(fake, PROFILES["llamacpp"], client, tmp_path).ainvoke("hi", max_tokens=77)
    await model_for(fake, PROFILES["openai"], client, tmp_path).ainvoke("hi", max_tokens=77)
    llamacpp, openai = (r.body for r in fake.requests)
    assert llamacpp["max_tokens"] == 77 and "max_completion_tokens" not in llamacpp
    assert openai["max_completion_tokens"] == 77 and "max_tokens" not in openai


@pytest.mark.parametrize("stream", [False, True])
async def test_llamacpp_gets_empty_content_beside_tool_calls(
    fake: FakeUpstream, client: httpx.AsyncClient, tmp_path: Path, stream: bool
) -> None:
    fake.quirks = {"null_content_500"}
    fake.always("m", text("2+3 = 5"))

    async def run(compat: Compat) -> str:
        model = model_for(fake, compat, client, tmp_path)
        if stream:
            return "".join([str(c.content) async for c in model.astream(TOOL_HISTORY)])
        return str((await model.ainvoke(TOOL_HISTORY)).content)

    assert await run(PROFILES["llamacpp"]) == "2+3 = 5"
    assistant = fake.requests[-1].body["messages"][1]
    assert assistant["content"] == "" and assistant["tool_calls"][0]["function"]["name"]
    with pytest.raises(Exception) as info:  # the quirk, without the fix
        await run(PROFILES["openai"])
    assert classify(info.value).reason is Reason.SERVER_ERROR


async def streamed_tool_call(model: Any) -> AIMessage:
    bound = model.bind_tools([make_calculator_tool()])
    chunks = [chunk async for chunk in bound.astream("what is 2+3?")]
    return add_ai_message_chunks(chunks[0], *chunks[1:])


async def test_llamacpp_repeated_tool_name_in_streamed_deltas_stays_one_name(
    fake: FakeUpstream, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    fake.quirks = {"repeat_tool_name"}
    fake.always("m", tool_call("calculator", {"expression": "2+3"}))
    fixed = await streamed_tool_call(model_for(fake, PROFILES["llamacpp"], client, tmp_path))
    assert [(c["name"], c["args"]) for c in fixed.tool_calls] == [
        ("calculator", {"expression": "2+3"})
    ]
    assert fixed.tool_calls[0]["id"] and fixed.tool_calls[0]["id"].startswith("call_")
    plain = await streamed_tool_call(model_for(fake, PROFILES["openai"], client, tmp_path))
    assert plain.tool_calls[0]["name"] == "calculatorcalculatorcalculator"


async def test_drop_params_for_a_server_rejecting_stream_options(
    fake: FakeUpstream, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    fake.quirks = {"reject_stream_options"}
    fake.always("m", text("streamed fine"))
    compat = PROFILES["llamacpp"].with_dropped(["stream_options"])
    model = model_for(fake, compat, client, tmp_path)
    assert "".join([str(c.content) async for c in model.astream("hi")]) == "streamed fine"
    assert "stream_options" not in fake.requests[-1].body
    with pytest.raises(Exception) as info:
        async for _ in model_for(fake, PROFILES["llamacpp"], client, tmp_path).astream("hi"):
            pass
    assert classify(info.value).reason is Reason.BAD_REQUEST


@pytest.mark.parametrize("name", ["ollama", "vllm", "llamacpp"])
async def test_parallel_tool_calls_is_not_sent_to_local_servers(
    fake: FakeUpstream, client: httpx.AsyncClient, tmp_path: Path, name: str
) -> None:
    fake.quirks = {"reject_parallel_tool_calls"}
    fake.always("m", text("ok"))
    tools = [make_calculator_tool()]
    local = model_for(fake, PROFILES[name], client, tmp_path)
    reply = await local.bind_tools(tools, parallel_tool_calls=False).ainvoke("hi")
    assert reply.content == "ok"
    assert "parallel_tool_calls" not in fake.requests[-1].body
    openai = model_for(fake, PROFILES["openai"], client, tmp_path)
    with pytest.raises(Exception) as info:
        await openai.bind_tools(tools, parallel_tool_calls=False).ainvoke("hi")
    assert classify(info.value).reason is Reason.BAD_REQUEST


async def test_llamacpp_tool_turn_streams_through_the_app(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    """Both llama.cpp quirks at once, end to end: the streamed tool call (name repeated
    in each delta) runs the calculator, and the follow-up request carrying the tool
    call (content "" not null) is answered."""
    fake.quirks = {"repeat_tool_name", "null_content_500"}
    fake.script("qwen", tool_call("calculator", {"expression": "2+3"}), text("2+3 = 5"))
    path = tmp_path / "models.toml"
    path.write_text(
        f'[providers.llama]\nbase_url = "{fake.base_url}"\ncompat = "llamacpp"\n\n'
        '[[chain]]\nprovider = "llama"\nmodel = "qwen"\n',
        encoding="utf-8",
    )
    settings = make_settings(tmp_path, models_file=path, model_timeout_seconds=5.0)
    with serve_in_thread(create_app(settings)) as url:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as api,
            aconnect_sse(
                api, "POST", "/api/chat/message/stream", json={"message": "what is 2+3?"}
            ) as source,
        ):
            events = [(e.event, json.loads(e.data)) async for e in source.aiter_sse()]
    starts = [d for n, d in events if n == "tool_start"]
    assert [s["name"] for s in starts] == ["calculator"]
    assert events[-1][0] == "done", events
    assert events[-1][1]["response"] == "2+3 = 5"
    assert events[-1][1]["tools_used"] == ["calculator"]
    # Keyless provider: no key needed, a placeholder bearer only.
    assert fake.requests[0].headers["authorization"] == "Bearer no-key"
    with sqlite3.connect(settings.database_url.split(":///", 1)[1]) as conn:
        assert conn.execute("SELECT count(*) FROM turns").fetchone() == (1,)
