"""A run outlives the request that created it: its Redis calls, and a client following
it, must not be bounded by that request's Redis time (`REDIS_REQUEST_TIMEOUT_SECONDS`).

Regression: a run task inherited the creating request's budget, and a reader's
`XREAD BLOCK` calls were charged to its request, so any run slower than the budget
ended in 503 `store_unavailable` (or a dropped connection) over Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from agent_server.api.app import create_app
from tests.conftest import ALICE, make_settings
from tests.support.fake_upstream import FakeUpstream, fake_upstream, text
from tests.support.redis import delete_prefix, require_redis, unique_prefix
from tests.support.servers import serve_in_thread

MODEL = "slow/model"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


async def test_a_run_slower_than_the_request_budget_completes(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    url = require_redis()
    prefix = unique_prefix("runs-budget")
    upstream.always(MODEL, text("Worth the wait.", first_token_latency=2.0))
    settings = make_settings(
        tmp_path,
        agent_api_keys=[ALICE],
        openrouter_api_key="sk-test",
        openrouter_base_url=upstream.base_url,
        agent_models=[MODEL],
        redis_url=url,
        redis_key_prefix=prefix,
        redis_request_timeout_seconds=0.5,
    )
    try:
        with serve_in_thread(create_app(settings)) as base:
            client = get_client(url=base, api_key=ALICE)
            thread = await client.threads.create()
            values = await client.runs.wait(
                thread["thread_id"],
                "agent",
                input={"messages": [{"role": "user", "content": "take your time"}]},
            )
            assert values["messages"][-1]["content"] == "Worth the wait."
            chunks = [
                part.event
                async for part in client.runs.stream(
                    thread["thread_id"],
                    "agent",
                    input={"messages": [{"role": "user", "content": "again"}]},
                    stream_mode="values",
                )
            ]
            assert "error" not in chunks and chunks.count("values") >= 2
            await client.http.client.aclose()
    finally:
        delete_prefix(url, prefix)
