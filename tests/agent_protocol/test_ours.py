"""Ours only (skipped against the reference, which has no auth, SQL or tenants): our API
keys through the SDK, a stranger's 404 on every thread and run route, sessions and
threads as one thing across `/api` and the AP, the graph's public context, rate limits.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.agent_protocol.conftest import (
    FAST_REPLY,
    GRAPH_ID,
    SLOW,
    TOOL_MODEL,
    Target,
    ask,
    message_types,
    ours_only,
    ours_settings,
    wait_status,
)
from tests.conftest import ALICE, BOB
from tests.support.fake_upstream import FakeUpstream, text, tool_call
from tests.support.servers import serve_in_thread

pytestmark = ours_only


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def principal_of(key: str) -> str:
    """How our server names an env key's tenant (`env:<sha256 prefix>`)."""
    return f"env:{hashlib.sha256(key.encode()).hexdigest()[:12]}"


@pytest.fixture
async def bob(target: Target) -> AsyncIterator[LangGraphClient]:
    async with target.client(api_key=BOB) as sdk:
        yield sdk


async def test_the_sdk_authenticates_with_x_api_key(target: Target) -> None:
    async with target.client(api_key=ALICE) as alice:
        assert isinstance(await alice.threads.search(limit=1), list)
    async with get_client(url=target.url, api_key="not-a-key", timeout=10) as stranger:
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await stranger.threads.search()
    assert refused.value.response.status_code == 401
    assert refused.value.response.json()["error"]["code"] == "unauthorized"


async def test_bearer_and_no_key(target: Target) -> None:
    async with httpx.AsyncClient(base_url=target.url) as raw:
        assert (
            await raw.post("/threads/search", json={}, headers=bearer(ALICE))
        ).status_code == 200
        made = await raw.post("/threads", json={}, headers=bearer(BOB))
        assert made.status_code == 200
        for method, path in (
            ("POST", "/threads/search"),
            ("POST", "/threads"),
            ("POST", "/runs/wait"),
        ):
            answer = await raw.request(method, path, json={})
            assert answer.status_code == 401, (path, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "unauthorized" and error["request_id"]


async def test_a_stranger_gets_404_on_every_thread_and_run_route(
    client: LangGraphClient, bob: LangGraphClient, target: Target
) -> None:
    thread = await client.threads.create(metadata={"owner": "alice"})
    tid = thread["thread_id"]
    values = await client.runs.wait(tid, GRAPH_ID, input=ask("alice's secret"))
    run = (await client.runs.list(tid))[0]
    rid = run["run_id"]
    head = await client.threads.get_state(tid)
    checkpoint_id = head["checkpoint"]["checkpoint_id"]

    attempts: dict[str, Callable[[], Awaitable[Any]]] = {
        "threads.get": lambda: bob.threads.get(tid),
        "threads.update": lambda: bob.threads.update(tid, metadata={"owner": "bob"}),
        "threads.copy": lambda: bob.threads.copy(tid),
        "threads.get_state": lambda: bob.threads.get_state(tid),
        "threads.get_state(checkpoint_id)": lambda: bob.threads.get_state(
            tid, checkpoint_id=checkpoint_id
        ),
        "threads.get_state(checkpoint)": lambda: bob.threads.get_state(
            tid, checkpoint={"thread_id": tid, "checkpoint_id": checkpoint_id}
        ),
        "threads.update_state": lambda: bob.threads.update_state(
            tid, {"messages": [{"type": "ai", "content": "bob was here"}]}, as_node="model"
        ),
        "threads.get_history": lambda: bob.threads.get_history(tid),
        "runs.create": lambda: bob.runs.create(tid, GRAPH_ID, input=ask("bob")),
        "runs.wait": lambda: bob.runs.wait(tid, GRAPH_ID, input=ask("bob")),
        "runs.stream": lambda: _drain(bob.runs.stream(tid, GRAPH_ID, input=ask("bob"))),
        "runs.list": lambda: bob.runs.list(tid),
        "runs.get": lambda: bob.runs.get(tid, rid),
        "runs.join": lambda: bob.runs.join(tid, rid),
        "runs.join_stream": lambda: _drain(bob.runs.join_stream(tid, rid, last_event_id="-1")),
        "runs.cancel": lambda: bob.runs.cancel(tid, rid),
        "threads.delete": lambda: bob.threads.delete(tid),
    }
    statuses: dict[str, int | str] = {}
    for name, attempt in attempts.items():
        try:
            await attempt()
            statuses[name] = "allowed"
        except httpx.HTTPStatusError as exc:  # NotFoundError is one
            statuses[name] = exc.response.status_code
    assert statuses == dict.fromkeys(attempts, 404), statuses
    async with httpx.AsyncClient(base_url=target.url, headers=bearer(BOB)) as raw:
        for path in (f"/threads/{tid}/runs/{rid}/stream", f"/threads/{tid}/state/{checkpoint_id}"):
            assert (await raw.get(path)).status_code == 404, path
        assert (await raw.post(f"/threads/{tid}/runs/{rid}/cancel?wait=1")).status_code == 404

    assert tid not in [t["thread_id"] for t in await bob.threads.search(limit=1000)]
    # Alice's thread is untouched.
    assert (await client.threads.get(tid))["metadata"]["owner"] == "alice"
    assert (await client.threads.get_state(tid))["values"] == values
    assert [r["run_id"] for r in await client.runs.list(tid)] == [rid]


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


async def test_a_session_made_by_rest_is_a_thread(client: LangGraphClient, target: Target) -> None:
    async with httpx.AsyncClient(base_url=target.url, headers=bearer(ALICE), timeout=30) as api:
        made = await api.post("/api/chat/session", json={"title": "from REST"})
        assert made.status_code == 201, made.text
        sid = made.json()["session_id"]
        turn = await api.post("/api/chat/message", json={"session_id": sid, "message": "rest hi"})
        assert turn.status_code == 200, turn.text
        assert turn.json()["response"] == FAST_REPLY
    found = {t["thread_id"]: t for t in await client.threads.search(limit=1000)}
    assert sid in found
    assert message_types(found[sid]["values"]) == ["human", "ai"]
    assert [m["content"] for m in found[sid]["values"]["messages"]] == ["rest hi", FAST_REPLY]
    # And the SDK continues the same conversation.
    values = await client.runs.wait(sid, GRAPH_ID, input=ask("sdk follow-up"))
    assert message_types(values) == ["human", "ai", "human", "ai"]


async def test_a_thread_made_by_the_sdk_is_a_session(
    client: LangGraphClient, target: Target
) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, GRAPH_ID, input=ask("sdk hi"))
    async with httpx.AsyncClient(base_url=target.url, headers=bearer(ALICE), timeout=30) as api:
        sessions = (await api.get("/api/chat/sessions", params={"limit": 200})).json()["sessions"]
        assert tid in [s["session_id"] for s in sessions]
        history = await api.get(f"/api/chat/history/{tid}")
        assert history.status_code == 200, history.text
        turns = history.json()["turns"]
        assert [t["user_message"] for t in turns] == ["sdk hi"]
        assert turns[0]["response"] == FAST_REPLY
        # A REST turn on the SDK's thread lands in the same checkpoint state.
        rest = await api.post("/api/chat/message", json={"session_id": tid, "message": "rest too"})
        assert rest.status_code == 200, rest.text
        # Another tenant sees neither.
        assert (await api.get(f"/api/chat/history/{tid}", headers=bearer(BOB))).status_code == 404
    state = await client.threads.get_state(tid)
    assert [m["content"] for m in state["values"]["messages"] if m["type"] == "human"] == [
        "sdk hi",
        "rest too",
    ]


def script_search(upstream: FakeUpstream, query: str) -> None:
    upstream.script(TOOL_MODEL, tool_call("search", {"query": query}), text("searched"))


async def tool_results(client: LangGraphClient, tid: str) -> str:
    state = await client.threads.get_state(tid)
    return " ".join(str(m["content"]) for m in state["values"]["messages"] if m["type"] == "tool")


async def test_context_cannot_choose_whose_documents_search_reads(
    client: LangGraphClient, bob: LangGraphClient, target: Target
) -> None:
    secret = f"zebra-{uuid.uuid4().hex[:8]}"
    word = f"passphrase{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=target.url, headers=bearer(BOB)) as api:
        doc = await api.post(
            "/api/documents", json={"title": "bob's", "content": f"The {word} is {secret}."}
        )
        assert doc.status_code == 201, doc.text
    # Control: Bob's own search finds it (so a miss below means something).
    script_search(target.upstream, word)
    own = await bob.threads.create()
    await bob.runs.wait(
        own["thread_id"], GRAPH_ID, input=ask("find"), context={"model": TOOL_MODEL}
    )
    assert secret in await tool_results(bob, own["thread_id"])

    for how in ("context", "configurable"):
        script_search(target.upstream, word)
        thread = await client.threads.create()
        kw: dict[str, Any] = (
            {"context": {"model": TOOL_MODEL, "principal": principal_of(BOB)}}
            if how == "context"
            else {
                "context": {"model": TOOL_MODEL},
                "config": {"configurable": {"principal": principal_of(BOB)}},
            }
        )
        try:
            await client.runs.wait(thread["thread_id"], GRAPH_ID, input=ask("find"), **kw)
        except httpx.HTTPStatusError as exc:
            assert exc.response.status_code in (400, 422), (how, exc.response.text)
            continue
        assert secret not in await tool_results(client, thread["thread_id"]), how


@pytest.fixture(scope="module")
def limited(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from agent_server.api.app import create_app

    settings = ours_settings(
        tmp_path_factory.mktemp("ap-limited"), upstream, rate_limit_per_minute=3
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


async def test_rate_limits_apply_to_run_creation(limited: str) -> None:
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=limited, headers={"x-api-key": ALICE}, timeout=30) as raw:
        for _ in range(8):
            answer = await raw.post(
                "/runs/wait", json={"assistant_id": GRAPH_ID, "input": ask("hi")}
            )
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                error = answer.json()["error"]
                assert error["code"] and error["request_id"]
                break
    assert 429 in statuses, statuses
    assert statuses[0] == 200, statuses
    async with get_client(url=limited, api_key=ALICE, timeout=10) as sdk:
        with pytest.raises(httpx.HTTPStatusError) as limited_run:
            thread_id = str(uuid.uuid4())
            await sdk.runs.create(thread_id, GRAPH_ID, input=ask("hi"), if_not_exists="create")
    assert limited_run.value.response.status_code == 429


async def test_cancel_and_join_need_the_owner(
    client: LangGraphClient, bob: LangGraphClient
) -> None:
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], GRAPH_ID, input=ask("slow"), context=SLOW)
    await wait_status(client, thread["thread_id"], run["run_id"], ("running",))
    with pytest.raises(httpx.HTTPStatusError) as refused:  # raw: cancel(wait) streams
        await bob.runs.cancel(thread["thread_id"], run["run_id"], wait=True)
    assert refused.value.response.status_code == 404
    done = await client.runs.join(thread["thread_id"], run["run_id"])
    assert message_types(done) == ["human", "ai"]
    assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"
