"""Run routes through `langgraph_sdk`: background create, stream, wait, list, get, join,
cancel (`wait`, `action=interrupt|rollback`), stateless runs, `if_not_exists`,
`on_disconnect`."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError
from langgraph_sdk.schema import RunCreateMetadata

from tests.agent_protocol.conftest import (
    AGENT_ID,
    FAST_REPLY,
    GRAPH_ID,
    SLOW,
    SLOW_REPLY,
    TOOL_MODEL,
    Target,
    ask,
    last_ai_text,
    message_types,
    wait_status,
)
from tests.support.fake_upstream import text, tool_call


async def test_background_run_create_join_get_list(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, GRAPH_ID, input=ask("one"), metadata={"mine": "yes"})
    uuid.UUID(run["run_id"])
    assert run["thread_id"] == tid and run["assistant_id"] == AGENT_ID
    assert run["status"] in ("pending", "running")
    assert run["metadata"]["mine"] == "yes"
    assert run["multitask_strategy"] in ("enqueue", None)  # the default strategy
    values = await client.runs.join(tid, run["run_id"])
    assert last_ai_text(values) == FAST_REPLY
    got = await client.runs.get(tid, run["run_id"])
    assert got["status"] == "success" and got["run_id"] == run["run_id"]

    second = await client.runs.create(tid, AGENT_ID, input=ask("two"))
    await client.runs.join(tid, second["run_id"])
    listed = await client.runs.list(tid)
    assert [r["run_id"] for r in listed] == [second["run_id"], run["run_id"]]  # newest first
    assert [r["run_id"] for r in await client.runs.list(tid, limit=1)] == [second["run_id"]]
    assert [r["run_id"] for r in await client.runs.list(tid, limit=1, offset=1)] == [run["run_id"]]
    assert message_types(await client.runs.join(tid, second["run_id"])) == [
        "human",
        "ai",
        "human",
        "ai",
    ]


async def test_stream_starts_with_metadata_and_ends_with_the_answer(
    client: LangGraphClient,
) -> None:
    thread = await client.threads.create()
    created: list[RunCreateMetadata] = []
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"], GRAPH_ID, input=ask("hi"), on_run_created=created.append
        )
    ]
    assert parts[0].event == "metadata"
    run_id = parts[0].data["run_id"]
    assert parts[0].data["attempt"] == 1
    assert created and created[0]["run_id"] == run_id  # from Content-Location
    assert created[0]["thread_id"] == thread["thread_id"]
    values = [p.data for p in parts if p.event == "values"]
    assert values and last_ai_text(values[-1]) == FAST_REPLY
    assert message_types(values[0]) == ["human"]  # the first one is the input applied
    assert {p.event for p in parts} <= {"metadata", "values", "end"}
    assert (await client.runs.get(thread["thread_id"], run_id))["status"] == "success"


async def test_wait_returns_the_final_values(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    values = await client.runs.wait(thread["thread_id"], GRAPH_ID, input=ask("hi"))
    assert message_types(values) == ["human", "ai"]
    assert last_ai_text(values) == FAST_REPLY
    assert values["messages"][0]["content"] == "hi"


async def test_join_of_a_live_run(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], GRAPH_ID, input=ask("slow"), context=SLOW)
    await wait_status(client, thread["thread_id"], run["run_id"], ("running",))
    assert (await client.threads.get(thread["thread_id"]))["status"] == "busy"
    values = await client.runs.join(thread["thread_id"], run["run_id"])
    assert last_ai_text(values) == SLOW_REPLY
    assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"
    assert (await client.threads.get(thread["thread_id"]))["status"] == "idle"


async def start_slow_run(client: LangGraphClient, content: str = "slow") -> tuple[str, str]:
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], GRAPH_ID, input=ask(content), context=SLOW)
    await wait_status(client, thread["thread_id"], run["run_id"], ("running",))
    return thread["thread_id"], run["run_id"]


async def test_cancel_with_wait_interrupts_a_running_run(client: LangGraphClient) -> None:
    tid, rid = await start_slow_run(client)
    await client.runs.cancel(tid, rid, wait=True)
    run = await client.runs.get(tid, rid)
    assert run["status"] == "interrupted"
    thread = await client.threads.get(tid)
    # Not busy any more; the reference says `interrupted` (the cut step is still `next`).
    assert thread["status"] in ("idle", "interrupted")
    # The thread takes a new run afterwards.
    values = await client.runs.wait(tid, GRAPH_ID, input=ask("after"))
    assert last_ai_text(values) == FAST_REPLY


async def test_cancel_without_wait_then_the_run_stops(client: LangGraphClient) -> None:
    tid, rid = await start_slow_run(client)
    await client.runs.cancel(tid, rid, wait=False, action="interrupt")
    run = await wait_status(client, tid, rid, ("interrupted", "success", "error"))
    assert run["status"] == "interrupted"


async def test_cancel_with_rollback_deletes_the_run(client: LangGraphClient) -> None:
    tid, rid = await start_slow_run(client, "doomed")
    await client.runs.cancel(tid, rid, wait=True, action="rollback")
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # the reference deletes the run just after `wait` returns
        try:
            await client.runs.get(tid, rid)
        except NotFoundError:
            break
        assert asyncio.get_running_loop().time() < deadline, "rolled-back run still there"
        await asyncio.sleep(0.05)
    state = await client.threads.get_state(tid)
    assert "doomed" not in str(state["values"])


async def test_cancel_a_pending_run_never_runs_it(client: LangGraphClient) -> None:
    tid, first = await start_slow_run(client)
    queued = await client.runs.create(
        tid, GRAPH_ID, input=ask("never"), multitask_strategy="enqueue"
    )
    assert queued["status"] == "pending"
    await client.runs.cancel(tid, queued["run_id"], wait=True)
    assert (await client.runs.get(tid, queued["run_id"]))["status"] == "interrupted"
    values = await client.runs.join(tid, first)
    assert last_ai_text(values) == SLOW_REPLY
    await asyncio.sleep(0.3)
    state = await client.threads.get_state(tid)
    assert "never" not in [m["content"] for m in state["values"]["messages"]]


async def test_stateless_wait_and_stream_leave_no_thread(client: LangGraphClient) -> None:
    created: list[RunCreateMetadata] = []
    values = await client.runs.wait(None, GRAPH_ID, input=ask("hi"), on_run_created=created.append)
    assert last_ai_text(values) == FAST_REPLY
    parts = [
        part
        async for part in client.runs.stream(
            None, GRAPH_ID, input=ask("hi"), stream_mode="values", on_run_created=created.append
        )
    ]
    assert parts[0].event == "metadata"
    assert last_ai_text([p.data for p in parts if p.event == "values"][-1]) == FAST_REPLY
    thread_ids = {c["thread_id"] for c in created if c.get("thread_id")}
    assert thread_ids, created  # /runs/wait's Content-Location names its temporary thread
    for thread_id in thread_ids:
        for _ in range(50):  # the reference deletes the temporary thread just after the run
            try:
                await client.threads.get(thread_id)
            except NotFoundError:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"stateless run left thread {thread_id}")


async def test_if_not_exists(client: LangGraphClient) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await client.runs.wait(missing, GRAPH_ID, input=ask("hi"))
    assert refused.value.response.status_code == 404
    with pytest.raises(NotFoundError):
        await client.runs.create(missing, GRAPH_ID, input=ask("hi"))
    values = await client.runs.wait(missing, GRAPH_ID, input=ask("hi"), if_not_exists="create")
    assert last_ai_text(values) == FAST_REPLY
    thread = await client.threads.get(missing)
    assert message_types(thread["values"]) == ["human", "ai"]


async def stream_then_disconnect(client: LangGraphClient, **kw: Any) -> tuple[str, str]:
    thread = await client.threads.create()
    stream = client.runs.stream(
        thread["thread_id"], GRAPH_ID, input=ask("slow"), context=SLOW, stream_mode="values", **kw
    )
    first = await anext(stream)
    assert first.event == "metadata"
    await anext(stream)  # the run is under way
    await stream.aclose()  # closes the HTTP response: the client is gone
    return thread["thread_id"], first.data["run_id"]


async def test_on_disconnect_cancel(client: LangGraphClient) -> None:
    tid, rid = await stream_then_disconnect(client, on_disconnect="cancel")
    run = await wait_status(client, tid, rid, ("interrupted", "success", "error"))
    assert run["status"] == "interrupted"


@pytest.mark.parametrize("on_disconnect", ["continue", None])  # continue is the default
async def test_on_disconnect_continue(client: LangGraphClient, on_disconnect: str | None) -> None:
    kw = {"on_disconnect": on_disconnect} if on_disconnect else {}
    tid, rid = await stream_then_disconnect(client, **kw)
    run = await wait_status(client, tid, rid, ("interrupted", "success", "error"))
    assert run["status"] == "success"
    assert last_ai_text((await client.threads.get_state(tid))["values"]) == SLOW_REPLY


async def test_failed_run_is_an_error_event_and_status(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    bad = {"messages": [{"role": "alien", "content": "no such role"}]}
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"], GRAPH_ID, input=bad, stream_mode="values"
        )
    ]
    assert parts[0].event == "metadata"
    errors = [p for p in parts if p.event == "error"]
    assert len(errors) == 1, [p.event for p in parts]
    assert errors[0].data["message"] and errors[0].data["error"]
    assert parts[-1].event in ("error", "end")
    run = await client.runs.get(thread["thread_id"], parts[0].data["run_id"])
    assert run["status"] == "error"
    assert (await client.threads.get(thread["thread_id"]))["status"] == "error"
    failed = await client.runs.wait(thread["thread_id"], GRAPH_ID, input=bad, raise_error=False)
    assert "__error__" in failed, failed


async def test_breakpoint_before_tools_then_resume_with_null_input(
    client: LangGraphClient, target: Target
) -> None:
    """Studio's breakpoints: `interrupt_before`, then continue with `input: null`."""
    target.upstream.script(
        TOOL_MODEL, tool_call("calculator", {"expression": "6 * 7"}), text("6 * 7 = 42")
    )
    thread = await client.threads.create()
    tid = thread["thread_id"]
    paused = await client.runs.wait(
        tid,
        GRAPH_ID,
        input=ask("what is 6 * 7?"),
        context={"model": TOOL_MODEL},
        interrupt_before=["tools"],
    )
    assert message_types(paused)[:2] == ["human", "ai"]
    state = await client.threads.get_state(tid)
    assert state["next"] == ["tools"]
    assert (await client.threads.get(tid))["status"] == "interrupted"
    run = (await client.runs.list(tid))[0]
    assert run["status"] in ("success", "interrupted")  # reference: success (§3 Statuses)
    done = await client.runs.wait(tid, GRAPH_ID, input=None, context={"model": TOOL_MODEL})
    assert message_types(done) == ["human", "ai", "tool", "ai"]
    assert last_ai_text(done) == "6 * 7 = 42"
    assert (await client.threads.get(tid))["status"] == "idle"
