"""Joining a live run and resuming a dropped stream (AGENT-PROTOCOL.md §4.5).

The reconnect test cuts the SSE connection itself mid-run (raw httpx: the SDKs would
reconnect on their own and hide what the server did), rejoins
`GET /threads/{tid}/runs/{rid}/stream` with the last id it saw, and checks against a
`Last-Event-ID: -1` replay taken after the run: nothing lost, nothing repeated, ids
strictly increasing.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse
from langgraph_sdk.client import LangGraphClient

from tests.agent_protocol.conftest import (
    GRAPH_ID,
    SLOW,
    SLOW_REPLY,
    SLOW_WORDS,
    ask,
    last_ai_text,
    reference_wrong,
    wait_status,
)


async def test_join_stream_of_a_live_run(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, GRAPH_ID, input=ask("slow"), context=SLOW)
    await wait_status(client, tid, run["run_id"], ("running",))
    parts = [part async for part in client.runs.join_stream(tid, run["run_id"])]
    values = [p.data for p in parts if p.event == "values"]
    assert values and last_ai_text(values[-1]) == SLOW_REPLY
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"
    # A finished run: the join ends at once (nothing live to wait for).
    late = [part async for part in client.runs.join_stream(tid, run["run_id"])]
    assert {p.event for p in late} <= {"metadata", "values", "end", "error"}


@reference_wrong("join-stream honours only one `stream_mode` (api/runs.py .get), §4.5")
async def test_join_stream_with_several_modes(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(
        tid,
        GRAPH_ID,
        input=ask("slow"),
        context=SLOW,
        stream_mode=["values", "updates", "messages-tuple"],
        stream_resumable=True,
    )
    await wait_status(client, tid, run["run_id"], ("running",))
    parts = [
        part
        async for part in client.runs.join_stream(
            tid, run["run_id"], stream_mode=["values", "updates"], last_event_id="-1"
        )
    ]
    events = {p.event for p in parts}
    assert {"values", "updates"} <= events, events
    assert "messages" not in events


def payload(event: ServerSentEvent) -> Any:
    return json.loads(event.data) if event.data else None


def id_key(event_id: str) -> tuple[int, ...] | str:
    """Redis-stream style ids (`<ms>-<seq>`) compare as numbers; others as given."""
    if re.fullmatch(r"\d+(-\d+)*", event_id):
        return tuple(int(part) for part in event_id.split("-"))
    return event_id


def assert_strictly_increasing(events: list[ServerSentEvent]) -> None:
    ids = [e.id for e in events]
    assert all(ids), f"an event without an id: {[(e.event, e.id) for e in events]}"
    keys = [id_key(i) for i in ids]
    assert all(a < b for a, b in itertools.pairwise(keys)), ids


async def collect(
    http: httpx.AsyncClient, method: str, url: str, **kw: Any
) -> tuple[httpx.Response, list[ServerSentEvent]]:
    async with aconnect_sse(http, method, url, **kw) as source:
        assert source.response.status_code == 200, await source.response.aread()
        events = [event async for event in source.aiter_sse()]
        return source.response, events


async def test_reconnect_with_last_event_id_after_a_dropped_connection(
    client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    body = {
        "assistant_id": GRAPH_ID,
        "input": ask("slow"),
        "context": SLOW,
        "stream_mode": ["values", "messages-tuple"],
        "stream_resumable": True,
    }
    before_cut: list[ServerSentEvent] = []
    async with aconnect_sse(http, "POST", f"/threads/{tid}/runs/stream", json=body) as source:
        response = source.response
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in source.aiter_sse():
            before_cut.append(event)
            if sum(e.event == "messages" for e in before_cut) >= 5:
                break  # leaving the block closes the connection mid-run
    assert before_cut[0].event == "metadata"
    run_id = payload(before_cut[0])["run_id"]
    assert response.headers["location"] == f"/threads/{tid}/runs/{run_id}/stream"
    assert response.headers["content-location"] == f"/threads/{tid}/runs/{run_id}"
    assert (await client.runs.get(tid, run_id))["status"] == "running"  # cut mid-run
    with_ids = [e for e in before_cut if e.id]
    assert with_ids, [(e.event, e.id) for e in before_cut]

    _, after_cut = await collect(
        http,
        "GET",
        f"/threads/{tid}/runs/{run_id}/stream",
        headers={"Last-Event-ID": with_ids[-1].id},
    )
    assert (await wait_status(client, tid, run_id, ("success",)))["status"] == "success"
    _, replay = await collect(
        http, "GET", f"/threads/{tid}/runs/{run_id}/stream", headers={"Last-Event-ID": "-1"}
    )

    def key(e: ServerSentEvent) -> tuple[str, str, str]:
        return (e.id, e.event, e.data)

    def stored(events: list[ServerSentEvent]) -> list[ServerSentEvent]:
        return [e for e in events if e.event not in ("end",)]

    replayed = stored(replay)
    assert_strictly_increasing(replayed)
    assert replayed and replayed[0].id == with_ids[0].id  # -1 replays from the very start
    # The two halves, put together, are exactly the run's whole stream.
    joined = stored([*with_ids, *after_cut])
    assert [key(e) for e in joined] == [key(e) for e in replayed]
    assert_strictly_increasing(joined)
    chunks = [payload(e)[0] for e in joined if e.event == "messages"]
    text = "".join(str(m["content"]) for m in chunks if m["type"] == "AIMessageChunk")
    assert text == SLOW_REPLY and len(chunks) >= SLOW_WORDS
    final = [payload(e) for e in joined if e.event == "values"][-1]
    assert last_ai_text(final) == SLOW_REPLY


async def test_replay_of_a_finished_run_from_the_start(
    client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    """useStream's reconnect-on-mount: `joinStream(..., {lastEventId: "-1"})` after the run."""
    thread = await client.threads.create()
    tid = thread["thread_id"]
    parts = [
        part
        async for part in client.runs.stream(
            tid, GRAPH_ID, input=ask("hi"), stream_mode="values", stream_resumable=True
        )
    ]
    run_id = parts[0].data["run_id"]
    live_values = [p.data for p in parts if p.event == "values"]
    _, replay = await collect(
        http, "GET", f"/threads/{tid}/runs/{run_id}/stream", headers={"Last-Event-ID": "-1"}
    )
    assert_strictly_increasing([e for e in replay if e.event != "end"])
    assert [payload(e) for e in replay if e.event == "values"] == live_values
    replayed = [part async for part in client.runs.join_stream(tid, run_id, last_event_id="-1")]
    assert [p.data for p in replayed if p.event == "values"] == live_values
