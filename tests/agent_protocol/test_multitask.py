"""Two runs on one thread: `multitask_strategy` reject, enqueue, interrupt, rollback
(AGENT-PROTOCOL.md §3 "Multitask on one thread"). At most one run executes per thread."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError

from tests.agent_protocol.conftest import (
    FAST_REPLY,
    GRAPH_ID,
    SLOW,
    SLOW_REPLY,
    ask,
    human_contents,
    last_ai_text,
    wait_status,
)


async def busy_thread(client: LangGraphClient, content: str = "first") -> tuple[str, str]:
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], GRAPH_ID, input=ask(content), context=SLOW)
    await wait_status(client, thread["thread_id"], run["run_id"], ("running",))
    return thread["thread_id"], run["run_id"]


async def test_reject_is_409_on_every_run_route(client: LangGraphClient) -> None:
    tid, first = await busy_thread(client)
    with pytest.raises(ConflictError):
        await client.runs.create(tid, GRAPH_ID, input=ask("no"), multitask_strategy="reject")
    with pytest.raises(httpx.HTTPStatusError) as waited:  # the SDK raises raw for /wait
        await client.runs.wait(tid, GRAPH_ID, input=ask("no"), multitask_strategy="reject")
    assert waited.value.response.status_code == 409
    with pytest.raises(httpx.HTTPStatusError) as streamed:
        async for _ in client.runs.stream(
            tid, GRAPH_ID, input=ask("no"), multitask_strategy="reject"
        ):
            pass
    assert streamed.value.response.status_code == 409
    values = await client.runs.join(tid, first)
    assert human_contents(values) == ["first"]  # none of the rejected runs ran
    assert [r["run_id"] for r in await client.runs.list(tid)] == [first]
    # Once the thread is idle, `reject` admits a run.
    again = await client.runs.wait(tid, GRAPH_ID, input=ask("now"), multitask_strategy="reject")
    assert human_contents(again) == ["first", "now"]


async def test_enqueue_runs_in_creation_order_one_at_a_time(client: LangGraphClient) -> None:
    tid, first = await busy_thread(client)
    second = await client.runs.create(
        tid, GRAPH_ID, input=ask("second"), context=SLOW, multitask_strategy="enqueue"
    )
    third = await client.runs.create(tid, GRAPH_ID, input=ask("third"))  # enqueue is the default
    assert second["status"] == "pending" and third["status"] == "pending"
    seen: list[tuple[str, str, str]] = []
    ids = [first, second["run_id"], third["run_id"]]
    while True:
        # Read newest first: three reads are not one instant, and in creation order a
        # run that ended between two reads would look like two running at once. Newest
        # first, two "running" means two really overlapped (a run never restarts).
        newest_first = [(await client.runs.get(tid, rid))["status"] for rid in reversed(ids)]
        statuses = newest_first[::-1]
        if not seen or seen[-1] != tuple(statuses):
            seen.append(tuple(statuses))  # type: ignore[arg-type]
        assert statuses.count("running") <= 1, statuses
        if all(s in ("success", "error", "interrupted") for s in statuses):
            break
        await asyncio.sleep(0.05)
    assert seen[-1] == ("success", "success", "success"), seen
    # The second started only after the first ended, the third after the second.
    assert ("success", "running", "pending") in seen, seen
    values = await client.runs.join(tid, third["run_id"])
    assert human_contents(values) == ["first", "second", "third"]
    answers = [m["content"] for m in values["messages"] if m["type"] == "ai"]
    assert answers == [SLOW_REPLY, SLOW_REPLY, FAST_REPLY]


async def test_interrupt_cancels_the_running_run(client: LangGraphClient) -> None:
    tid, first = await busy_thread(client)
    second = await client.runs.create(
        tid, GRAPH_ID, input=ask("second"), multitask_strategy="interrupt"
    )
    values = await client.runs.join(tid, second["run_id"])
    assert last_ai_text(values) == FAST_REPLY
    assert (await client.runs.get(tid, first))["status"] == "interrupted"
    assert (await client.runs.get(tid, second["run_id"]))["status"] == "success"
    assert human_contents(values)[-1] == "second"
    assert SLOW_REPLY not in [m["content"] for m in values["messages"]]


async def test_rollback_leaves_no_trace_of_the_cancelled_run(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, GRAPH_ID, input=ask("kept"))
    doomed = await client.runs.create(tid, GRAPH_ID, input=ask("doomed"), context=SLOW)
    await wait_status(client, tid, doomed["run_id"], ("running",))
    second = await client.runs.create(
        tid, GRAPH_ID, input=ask("second"), multitask_strategy="rollback"
    )
    values = await client.runs.join(tid, second["run_id"])
    assert human_contents(values) == ["kept", "second"]
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, doomed["run_id"])
    assert doomed["run_id"] not in [r["run_id"] for r in await client.runs.list(tid)]
    history = await client.threads.get_history(tid, limit=100)
    assert all("doomed" not in str(state["values"]) for state in history)
    state = await client.threads.get_state(tid)
    assert "doomed" not in str(state["values"])
