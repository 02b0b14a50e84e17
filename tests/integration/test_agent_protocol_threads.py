"""The Agent Protocol surface driven by the real client, `langgraph_sdk.get_client`,
against our server over real HTTP (embedded SQLite checkpoints and transcript, the
offline model): info, assistants, threads, state, history, store, the run routes the
thread features need, CORS (incl. Private Network Access), text/plain bodies, and
ownership (another key gets 404 on every thread route).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError

from agent_server.api.app import create_app
from agent_server.config import Settings
from tests.conftest import ALICE, BOB, make_settings
from tests.support.fake_upstream import fake_upstream, text
from tests.support.servers import serve_in_thread

AGENT_ID = "fe096781-5601-53d2-b2f6-0d3403f7e9ca"
STUDIO = "https://smith.langchain.com"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, agent_api_keys=[ALICE, BOB], cors_origins=[STUDIO])


@pytest.fixture
def url(settings: Settings) -> Iterator[str]:
    with serve_in_thread(create_app(settings)) as base:
        yield base


@pytest.fixture
async def alice(url: str) -> AsyncIterator[LangGraphClient]:
    client = get_client(url=url, api_key=ALICE)
    yield client
    await client.http.client.aclose()


@pytest.fixture
async def bob(url: str) -> AsyncIterator[LangGraphClient]:
    client = get_client(url=url, api_key=BOB)
    yield client
    await client.http.client.aclose()


def ask(text: str) -> dict:
    return {"messages": [{"role": "human", "content": text}]}


async def test_info_ok_and_auth(url: str, alice: LangGraphClient) -> None:
    info = await alice.http.get("/info")
    assert info["flags"]["assistants"] is True and info["flags"]["crons"] is False
    assert tuple(int(p) for p in info["version"].split(".")) >= (0, 4, 35)
    async with httpx.AsyncClient(base_url=url) as raw:
        assert (await raw.get("/ok")).json() == {"ok": True}
        refused = await raw.post("/threads/search", json={})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        bearer = await raw.get("/info", headers={"Authorization": f"Bearer {ALICE}"})
        assert bearer.status_code == 200


async def test_assistants(alice: LangGraphClient, url: str) -> None:
    found = await alice.assistants.search(metadata={"created_by": "system"})
    assert [a["assistant_id"] for a in found] == [AGENT_ID]
    assert found[0]["graph_id"] == "agent" and found[0]["metadata"] == {"created_by": "system"}
    assert await alice.assistants.search(graph_id="nope") == []
    assert await alice.assistants.count() == 1
    by_graph = await alice.assistants.get("agent")
    assert by_graph == await alice.assistants.get(AGENT_ID)
    with pytest.raises(NotFoundError):
        await alice.assistants.get(str(uuid.uuid4()))

    drawn = await alice.assistants.get_graph("agent", xray=True)
    assert {n["id"] for n in drawn["nodes"]} == {
        "__start__",
        "model",
        "approve",
        "tools",
        "persist",
        "__end__",
    }
    assert {"source": "tools", "target": "model"} in drawn["edges"]
    schemas = await alice.assistants.get_schemas(AGENT_ID)
    assert "messages" in schemas["input_schema"]["properties"]
    assert "messages" in schemas["state_schema"]["properties"]
    assert set(schemas["context_schema"]["properties"]) == {
        "use_tools",
        "tools",
        "model",
        "temperature",
        "max_tokens",
        "require_approval",
        "sampling",
    }
    assert await alice.assistants.get_subgraphs("agent") == {}
    versions = await alice.assistants.get_versions(AGENT_ID)
    assert [v["version"] for v in versions] == [1]
    latest = await alice.assistants.set_latest(AGENT_ID, 1)
    assert latest["assistant_id"] == AGENT_ID

    # Studio: JSON labelled text/plain, X-Auth-Scheme, and the Memory tab's store calls.
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": ALICE}) as raw:
        studio = await raw.post(
            "/assistants/search",
            content=b'{"limit":10,"offset":0,"metadata":{"created_by":"system"}}',
            headers={"Content-Type": "text/plain;charset=UTF-8", "x-auth-scheme": "langsmith"},
        )
        assert studio.status_code == 200 and studio.json()[0]["assistant_id"] == AGENT_ID
        bad = await raw.post(
            "/assistants/search", content=b"{nope", headers={"Content-Type": "text/plain"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_json"
        invalid = await raw.post("/assistants/search", json={"limit": "many"})
        assert invalid.status_code == 422 and set(invalid.json()) == {"error"}
        assert (await raw.get("/assistants/agent/graph?xray=-1")).status_code == 422
        assert (await raw.post("/store/namespaces", json={})).json() == {"namespaces": []}
        assert (await raw.post("/store/items/search", content=b"")).json() == {"items": []}


async def test_threads_crud_search_and_sessions(alice: LangGraphClient, url: str) -> None:
    chosen = str(uuid.uuid4())
    thread = await alice.threads.create(thread_id=chosen, metadata={"graph_id": "agent", "n": 1})
    assert thread["thread_id"] == chosen and thread["status"] == "idle" and thread["values"] == {}
    with pytest.raises(ConflictError):
        await alice.threads.create(thread_id=chosen)
    same = await alice.threads.create(thread_id=chosen, if_exists="do_nothing")
    assert same["metadata"] == {"graph_id": "agent", "n": 1}

    patched = await alice.threads.update(chosen, metadata={"n": 2, "user": "a"})
    assert patched["metadata"] == {"graph_id": "agent", "n": 2, "user": "a"}
    assert (await alice.threads.get(chosen))["metadata"]["n"] == 2

    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": ALICE}) as raw:
        session = (await raw.post("/api/chat/session")).json()["session_id"]
        sessions = (await raw.get("/api/chat/sessions")).json()
        listed = sessions["sessions"] if isinstance(sessions, dict) else sessions
        assert chosen in {s["session_id"] for s in listed}  # a thread is a session
    found = await alice.threads.search(limit=10)
    assert {t["thread_id"] for t in found} == {chosen, session}  # and a session a thread
    assert [t["thread_id"] for t in await alice.threads.search(metadata={"user": "a"})] == [chosen]
    assert await alice.threads.search(metadata={"user": "b"}) == []
    assert [t["thread_id"] for t in await alice.threads.search(ids=[session])] == [session]
    assert len(await alice.threads.search(limit=1)) == 1
    oldest = await alice.threads.search(sort_by="created_at", sort_order="asc", limit=1)
    assert oldest[0]["thread_id"] == chosen
    assert {t["thread_id"] for t in await alice.threads.search(status="idle")} == {chosen, session}
    assert await alice.threads.search(status="busy") == []
    assert await alice.threads.count(metadata={"graph_id": "agent"}) == 1

    await alice.threads.delete(chosen)
    with pytest.raises(NotFoundError):
        await alice.threads.get(chosen)
    with pytest.raises(NotFoundError):
        await alice.threads.get("not-a-uuid")


async def test_state_history_update_state_and_copy(alice: LangGraphClient) -> None:
    thread = await alice.threads.create()
    tid = thread["thread_id"]
    fresh = await alice.threads.get_state(tid)
    assert fresh["values"] == {} and fresh["checkpoint"] is None and fresh["next"] == []

    result = await alice.runs.wait(tid, "agent", input=ask("what is 6 * 7?"))
    assert "42" in result["messages"][-1]["content"]
    second = await alice.runs.wait(tid, AGENT_ID, input=ask("what is 2 + 2?"))
    assert "4" in second["messages"][-1]["content"]

    after = await alice.threads.get(tid)
    assert after["status"] == "idle"
    assert (
        after["metadata"]["graph_id"] == "agent" and after["metadata"]["assistant_id"] == AGENT_ID
    )
    assert after["values"]["messages"][0]["type"] == "human"
    assert [t["thread_id"] for t in await alice.threads.search(metadata={"graph_id": "agent"})] == [
        tid
    ]

    state = await alice.threads.get_state(tid)
    assert state["checkpoint"]["thread_id"] == tid and state["next"] == []
    assert state["parent_checkpoint"]["checkpoint_id"]
    history = await alice.threads.get_history(tid, limit=100)
    assert history[0]["checkpoint"] == state["checkpoint"]
    assert len(await alice.threads.get_history(tid)) == 10  # the SDK's default limit
    assert len(await alice.threads.get_history(tid, limit=3)) == 3
    older = await alice.threads.get_history(tid, limit=100, before=history[1]["checkpoint"])
    assert [h["checkpoint"] for h in older] == [h["checkpoint"] for h in history[2:]]
    as_config = {"configurable": {"checkpoint_id": history[1]["checkpoint"]["checkpoint_id"]}}
    older = await alice.threads.get_history(tid, limit=100, before=as_config)  # JS SDK's type
    assert [h["checkpoint"] for h in older] == [h["checkpoint"] for h in history[2:]]
    inputs = await alice.threads.get_history(tid, limit=100, metadata={"source": "input"})
    assert inputs and {h["metadata"]["source"] for h in inputs} == {"input"}
    via_get = await alice.http.get(f"/threads/{tid}/history", params={"limit": 2})
    assert [h["checkpoint"] for h in via_get] == [h["checkpoint"] for h in history[:2]]

    past = history[3]
    at = await alice.threads.get_state(tid, checkpoint_id=past["checkpoint"]["checkpoint_id"])
    assert at["values"] == past["values"] and at["checkpoint"] == past["checkpoint"]
    at_post = await alice.threads.get_state(tid, checkpoint=past["checkpoint"])  # RemoteGraph's
    assert at_post["values"] == past["values"]
    with pytest.raises(NotFoundError):
        await alice.threads.get_state(tid, checkpoint_id=str(uuid.uuid4()))

    # Studio's "re-run from here": a copy of a checkpoint becomes the head.
    copied = await alice.threads.update_state(
        tid, None, as_node="__copy__", checkpoint=past["checkpoint"]
    )
    head = await alice.threads.get_state(tid)
    assert head["checkpoint"]["checkpoint_id"] == copied["checkpoint"]["checkpoint_id"]
    assert head["values"]["messages"] == past["values"]["messages"]
    edited = await alice.threads.update_state(
        tid, {"messages": [{"role": "human", "content": "edited", "id": "edit-1"}]}, as_node="model"
    )
    head = await alice.threads.get_state(tid)
    assert head["checkpoint"] == edited["checkpoint"]
    assert head["values"]["messages"][-1]["content"] == "edited"
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await alice.threads.update_state(tid, {"messages": []}, as_node="nope")
    assert refused.value.response.status_code == 422

    copy = await alice.threads.copy(tid)
    assert copy["thread_id"] != tid
    assert (await alice.threads.get_state(copy["thread_id"]))["values"] == head["values"]


async def test_streams_and_stateless_runs(alice: LangGraphClient) -> None:
    thread = await alice.threads.create()
    tid = thread["thread_id"]
    parts = [
        part
        async for part in alice.runs.stream(
            tid,
            "agent",
            input=ask("what is 3 * 3?"),
            stream_mode=["values", "messages-tuple", "updates"],
        )
    ]
    events = [p.event for p in parts]
    assert events[0] == "metadata" and events[-1] == "end"
    assert {"values", "messages", "updates"} <= set(events)
    run_id = parts[0].data["run_id"]
    assert (await alice.runs.get(tid, run_id))["status"] == "success"
    assert [r["run_id"] for r in await alice.runs.list(tid)] == [run_id]
    tokens = "".join(
        p.data[0]["content"]
        for p in parts
        if p.event == "messages" and p.data[0]["type"] == "AIMessageChunk"
    )
    final = [p for p in parts if p.event == "values"][-1].data
    assert tokens.endswith(final["messages"][-1]["content"])

    legacy = [
        p.event
        async for p in alice.runs.stream(
            tid, "agent", input=ask("what is 2+2?"), stream_mode="messages"
        )
    ]
    assert {"messages/metadata", "messages/partial", "messages/complete"} <= set(legacy)

    replay = [p async for p in alice.runs.join_stream(tid, run_id, last_event_id="-1")]
    assert [p.event for p in replay] == events  # the whole run again, from its log

    stateless = await alice.runs.wait(None, "agent", input=ask("what is 1 + 1?"))
    assert "2" in stateless["messages"][-1]["content"]
    assert [t["thread_id"] for t in await alice.threads.search()] == [tid]  # no thread left


async def test_a_breakpoint_leaves_the_thread_interrupted_until_resumed(
    alice: LangGraphClient,
) -> None:
    """Status `interrupted` comes from the state (work left, `next`), `idle` again once
    a run with `input: null` finished it. (`busy` is covered by test_threads_core:
    the offline model is too fast to catch a run holding the thread over HTTP.)"""
    thread = await alice.threads.create()
    tid = thread["thread_id"]
    await alice.runs.wait(tid, "agent", input=ask("what is 5 * 5?"), interrupt_before=["tools"])
    paused = await alice.threads.get(tid)
    assert paused["status"] == "interrupted"
    assert (await alice.threads.get_state(tid))["next"] == ["tools"]
    assert [t["thread_id"] for t in await alice.threads.search(status="interrupted")] == [tid]
    assert await alice.threads.search(status="idle") == []
    resumed = await alice.runs.wait(tid, "agent", input=None)
    assert "25" in resumed["messages"][-1]["content"]
    assert (await alice.threads.get(tid))["status"] == "idle"
    await alice.threads.delete(tid)
    assert await alice.threads.search() == []


async def test_strangers_get_404_on_every_thread_route(
    alice: LangGraphClient, bob: LangGraphClient
) -> None:
    thread = await alice.threads.create(metadata={"secret": True})
    tid = thread["thread_id"]
    await alice.runs.wait(tid, "agent", input=ask("hello"))
    run_id = (await alice.runs.list(tid))[0]["run_id"]
    calls = [
        bob.threads.get(tid),
        bob.threads.update(tid, metadata={"x": 1}),
        bob.threads.delete(tid),
        bob.threads.copy(tid),
        bob.threads.get_state(tid),
        bob.threads.get_state(tid, checkpoint={"thread_id": tid}),
        bob.threads.update_state(tid, {"messages": []}),
        bob.threads.get_history(tid),
        bob.runs.list(tid),
        bob.runs.get(tid, run_id),
        bob.runs.cancel(tid, run_id),
        bob.runs.create(tid, "agent", input=ask("mine now")),
    ]
    for call in calls:
        with pytest.raises(NotFoundError):
            await call
    # `wait`/`join` go through the SDK's reconnecting request: a raw HTTPStatusError.
    for call in (
        bob.runs.join(tid, run_id),
        bob.runs.wait(tid, "agent", input=ask("mine now")),
        bob.runs.wait(tid, "agent", input=ask("mine now"), if_not_exists="create"),
    ):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await call
        assert refused.value.response.status_code == 404
    with pytest.raises(NotFoundError):
        async for _ in bob.runs.join_stream(tid, run_id, last_event_id="-1"):
            pass
    with pytest.raises(NotFoundError):
        async for _ in bob.runs.stream(tid, "agent", input=ask("x"), if_not_exists="create"):
            pass
    with pytest.raises(ConflictError):  # someone else's id is never handed over
        await bob.threads.create(thread_id=tid, if_exists="do_nothing")
    assert await bob.threads.search() == []
    assert await bob.threads.search(metadata={"secret": True}) == []
    assert (await alice.threads.get(tid))["metadata"] == {
        "secret": True,
        "graph_id": "agent",
        "assistant_id": AGENT_ID,
    }


async def test_cors_preflight_for_studio_with_private_network_access(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as raw:
        preflight = await raw.options(
            "/threads/search",
            headers={
                "Origin": STUDIO,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": (
                    "content-type,x-api-key,x-auth-scheme,last-event-id,authorization,x-request-id"
                ),
                "Access-Control-Request-Private-Network": "true",
            },
        )
        assert preflight.status_code == 200, preflight.text
        headers = preflight.headers
        assert headers["access-control-allow-origin"] == STUDIO
        assert headers["access-control-allow-private-network"] == "true"
        methods = {m.strip() for m in headers["access-control-allow-methods"].split(",")}
        assert {"GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"} <= methods
        allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
        assert {"x-auth-scheme", "last-event-id", "x-api-key", "authorization"} <= allowed

        stranger = await raw.options(
            "/threads/search",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert stranger.status_code == 400
        assert "access-control-allow-origin" not in stranger.headers

        simple = await raw.post(
            "/threads",
            content=b"{}",
            headers={"Origin": STUDIO, "Content-Type": "text/plain", "x-api-key": ALICE},
        )
        assert simple.status_code == 200
        exposed = {
            h.strip().lower() for h in simple.headers["access-control-expose-headers"].split(",")
        }
        assert {
            "content-location",
            "location",
            "x-pagination-total",
            "x-pagination-next",
            "x-request-id",
            "retry-after",
        } <= exposed


async def test_keepalives_while_a_slow_run_goes_on(tmp_path: Path) -> None:
    """`/wait` sends a newline, streams a `: heartbeat` comment, every
    `SSE_PING_SECONDS` while a run takes its time (proxies close silent connections,
    and the JS SDK reconnects after 3 silent intervals); the body still parses."""
    with fake_upstream() as upstream:
        upstream.always(
            "slow",
            text(
                " ".join(f"w{i}" for i in range(12)), first_token_latency=1.0, tokens_per_second=8.0
            ),
        )
        settings = make_settings(
            tmp_path,
            openrouter_api_key="fake-upstream-key",
            openrouter_base_url=upstream.base_url,
            agent_models=["slow"],
            sse_ping_seconds=0.3,
        )
        with serve_in_thread(create_app(settings)) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as raw:
                body = {"assistant_id": "agent", "input": ask("hello")}
                waited = await raw.post("/runs/wait", json=body)
                assert waited.status_code == 200
                assert waited.content.startswith(b"\n")
                assert (
                    " ".join(f"w{i}" for i in range(12))
                    in json.loads(waited.content)["messages"][-1]["content"]
                )
                async with raw.stream("POST", "/runs/stream", json=body) as streamed:
                    chunks = b"".join([chunk async for chunk in streamed.aiter_bytes()])
                assert b": heartbeat" in chunks and b"event: end" in chunks


async def test_a_thread_deleted_here_is_gone_for_rest_too(alice: LangGraphClient, url: str) -> None:
    """Embedded mode remembers REST sessions in-process: a thread deleted through this
    API must not come back to life through a REST message."""
    headers = {"Authorization": f"Bearer {ALICE}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as rest:
        first = await rest.post("/api/chat/message", json={"message": "Calculate 2 * 3"})
        session_id = first.json()["session_id"]
        again = await rest.post(
            "/api/chat/message", json={"message": "Calculate 3 * 4", "session_id": session_id}
        )
        assert again.status_code == 200
        await alice.threads.delete(session_id)
        gone = await rest.post(
            "/api/chat/message", json={"message": "Calculate 4 * 5", "session_id": session_id}
        )
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "session_not_found"
