"""Ours only: two replicas (two `create_app` servers on one Redis prefix and one SQL
database, as behind a load balancer). A run started on replica A is seen, joined,
rejoined from the start, refused to a second run and cancelled from replica B."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError

from tests.agent_protocol.conftest import (
    GRAPH_ID,
    SLOW,
    SLOW_REPLY,
    ask,
    human_contents,
    last_ai_text,
    ours_only,
    ours_settings,
    wait_status,
)
from tests.conftest import ALICE
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis import delete_prefix, require_redis, unique_prefix
from tests.support.servers import serve_in_thread

pytestmark = ours_only


@pytest.fixture(scope="module")
def replica_urls(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    from agent_server.api.app import create_app

    redis_url = require_redis()
    prefix = unique_prefix("ap-replicas")
    shared = tmp_path_factory.mktemp("ap-replicas")  # one SQL database for both
    try:
        with ExitStack() as stack:
            urls = [
                stack.enter_context(
                    serve_in_thread(
                        create_app(
                            ours_settings(
                                shared, upstream, redis_url=redis_url, redis_key_prefix=prefix
                            )
                        )
                    )
                )
                for _ in range(2)
            ]
            yield urls[0], urls[1]
    finally:
        delete_prefix(redis_url, prefix)


@pytest.fixture
async def pair(replica_urls: tuple[str, str]) -> AsyncIterator[tuple[LangGraphClient, ...]]:
    a_url, b_url = replica_urls
    async with (
        get_client(url=a_url, api_key=ALICE, timeout=30) as a,
        get_client(url=b_url, api_key=ALICE, timeout=30) as b,
    ):
        yield a, b


async def slow_run_on(client: LangGraphClient, content: str = "slow") -> tuple[str, str]:
    thread = await client.threads.create()
    run = await client.runs.create(
        thread["thread_id"], GRAPH_ID, input=ask(content), context=SLOW, stream_resumable=True
    )
    return thread["thread_id"], run["run_id"]


async def test_a_run_started_on_a_is_joined_from_b(pair: tuple[LangGraphClient, ...]) -> None:
    a, b = pair
    tid, rid = await slow_run_on(a)
    assert (await wait_status(b, tid, rid, ("running",)))["status"] == "running"
    assert (await b.threads.get(tid))["status"] == "busy"
    values = await b.runs.join(tid, rid)
    assert last_ai_text(values) == SLOW_REPLY
    assert (await b.runs.get(tid, rid))["status"] == "success"
    assert last_ai_text((await b.threads.get_state(tid))["values"]) == SLOW_REPLY


async def test_join_stream_from_b_replays_a_live_run_of_a(
    pair: tuple[LangGraphClient, ...],
) -> None:
    a, b = pair
    tid, rid = await slow_run_on(a)
    await wait_status(a, tid, rid, ("running",))
    parts = [part async for part in b.runs.join_stream(tid, rid, last_event_id="-1")]
    values = [p.data for p in parts if p.event == "values"]
    assert values and human_contents(values[0]) == ["slow"]  # from the very start
    assert last_ai_text(values[-1]) == SLOW_REPLY


async def test_b_cancels_a_run_running_on_a(pair: tuple[LangGraphClient, ...]) -> None:
    a, b = pair
    tid, rid = await slow_run_on(a)
    await wait_status(b, tid, rid, ("running",))
    await b.runs.cancel(tid, rid, wait=True)
    assert (await a.runs.get(tid, rid))["status"] == "interrupted"
    assert (await b.runs.get(tid, rid))["status"] == "interrupted"
    state = await a.threads.get_state(tid)
    assert SLOW_REPLY not in [m["content"] for m in state["values"]["messages"]]


async def test_reject_holds_across_replicas(pair: tuple[LangGraphClient, ...]) -> None:
    a, b = pair
    tid, rid = await slow_run_on(a)
    await wait_status(a, tid, rid, ("running",))
    with pytest.raises(ConflictError):
        await b.runs.create(tid, GRAPH_ID, input=ask("no"), multitask_strategy="reject")
    queued = await b.runs.create(tid, GRAPH_ID, input=ask("queued on b"))
    values = await a.runs.join(tid, queued["run_id"])
    assert human_contents(values) == ["slow", "queued on b"]
