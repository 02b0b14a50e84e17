"""Every stream mode the clients request, alone and together: the event names on the
wire, their payloads, the first `metadata` event, nothing unrequested leaking."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.schema import StreamPart

from tests.agent_protocol.conftest import (
    FAST_REPLY,
    GRAPH_ID,
    TOOL_MODEL,
    Target,
    ask,
    last_ai_text,
)
from tests.support.fake_upstream import text, tool_call

TERMINAL = {"end"}
"""Events a server may add at the end (the reference just closes the stream)."""


async def stream(
    client: LangGraphClient, mode: str | list[str], content: str = "hi", **kw: Any
) -> list[StreamPart]:
    thread = await client.threads.create()
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"], GRAPH_ID, input=ask(content), stream_mode=mode, **kw
        )
    ]
    assert parts, "empty stream"
    assert parts[0].event == "metadata", [p.event for p in parts]
    assert set(parts[0].data) >= {"run_id", "attempt"}
    assert "error" not in [p.event for p in parts], [p.data for p in parts if p.event == "error"]
    return parts


def names(parts: list[StreamPart]) -> set[str]:
    return {p.event for p in parts[1:]} - TERMINAL


def script_calculator(target: Target) -> None:
    target.upstream.script(
        TOOL_MODEL,
        tool_call("calculator", {"expression": "10 * 20"}),
        text("10 * 20 = 200"),
    )


async def test_values(client: LangGraphClient) -> None:
    parts = await stream(client, "values")
    assert names(parts) == {"values"}
    assert last_ai_text(parts[-1 if parts[-1].event == "values" else -2].data) == FAST_REPLY


async def test_updates(client: LangGraphClient) -> None:
    parts = await stream(client, "updates")
    assert names(parts) == {"updates"}
    nodes = [node for p in parts[1:] if p.event == "updates" for node in p.data]
    assert nodes[0] == "model" and "persist" in nodes, nodes
    model_update = next(p.data["model"] for p in parts[1:] if "model" in p.data)
    assert model_update["messages"][-1]["content"] == FAST_REPLY


async def test_messages_tuple_streams_chunks_that_merge_into_the_answer(
    client: LangGraphClient,
) -> None:
    parts = await stream(client, "messages-tuple")
    assert names(parts) == {"messages"}  # the wire name of messages-tuple
    chunks = [p.data for p in parts if p.event == "messages"]
    ai = [(m, meta) for m, meta in chunks if m["type"] in ("AIMessageChunk", "ai")]
    assert len(ai) >= 2, chunks  # token by token, not one final message
    assert len({m["id"] for m, _ in ai}) == 1  # one stable id to merge by
    assert "".join(str(m["content"]) for m, _ in ai) == FAST_REPLY
    assert {meta["langgraph_node"] for _, meta in ai} == {"model"}
    assert all("langgraph_step" in meta for _, meta in ai)


async def test_messages_tuple_with_a_tool_call(client: LangGraphClient, target: Target) -> None:
    script_calculator(target)
    parts = await stream(
        client, "messages-tuple", "what is 10 * 20?", context={"model": TOOL_MODEL}
    )
    chunks = [p.data for p in parts if p.event == "messages"]
    calls = [
        c for m, _ in chunks if m["type"] in ("AIMessageChunk", "ai") for c in m.get("tool_calls")
    ]
    assert "calculator" in {c["name"] for c in calls if c.get("name")}, chunks
    tools = [(m, meta) for m, meta in chunks if m["type"] == "tool"]
    assert [(m["name"], meta["langgraph_node"]) for m, meta in tools] == [("calculator", "tools")]
    answer = "".join(
        str(m["content"]) for m, meta in chunks if m["type"] == "AIMessageChunk" and m["content"]
    )
    assert answer.endswith("10 * 20 = 200"), answer


async def test_legacy_messages(client: LangGraphClient) -> None:
    parts = await stream(client, "messages")
    events = names(parts)
    assert "messages/metadata" in events and "messages/partial" in events, events
    assert events <= {"messages/metadata", "messages/partial", "messages/complete"}
    partial = [p.data for p in parts if p.event == "messages/partial"]
    # Accumulated, not deltas: the last partial holds the whole answer.
    assert partial[-1][0]["content"] == FAST_REPLY
    assert len(partial) >= 2 and FAST_REPLY.startswith(partial[0][0]["content"])
    meta = next(p.data for p in parts if p.event == "messages/metadata")
    assert partial[-1][0]["id"] in meta


async def test_custom_carries_our_tool_events(client: LangGraphClient, target: Target) -> None:
    script_calculator(target)
    parts = await stream(client, "custom", "what is 10 * 20?", context={"model": TOOL_MODEL})
    assert names(parts) == {"custom"}
    events = [p.data for p in parts if p.event == "custom"]
    kinds = [e.get("event") for e in events]
    assert "tool_start" in kinds and "tool_end" in kinds, events
    start = next(e for e in events if e.get("event") == "tool_start")
    assert start["name"] == "calculator" and start["args"] == {"expression": "10 * 20"}
    assert kinds.index("tool_start") < kinds.index("tool_end")


async def test_debug_checkpoints_carry_their_parent(client: LangGraphClient) -> None:
    parts = await stream(client, "debug")
    assert names(parts) == {"debug"}
    debug = [p.data for p in parts if p.event == "debug"]
    assert {d["type"] for d in debug} >= {"checkpoint", "task", "task_result"}
    checkpoints = [d["payload"] for d in debug if d["type"] == "checkpoint"]
    assert len(checkpoints) >= 3
    for payload in checkpoints:
        assert {"checkpoint", "parent_checkpoint", "values", "next", "metadata"} <= set(payload)
    chained = [p for p in checkpoints if p["parent_checkpoint"]]
    assert chained and all(p["parent_checkpoint"]["checkpoint_id"] for p in chained)
    assert all("step" in d and "timestamp" in d for d in debug)


async def test_events(client: LangGraphClient) -> None:
    parts = await stream(client, "events")
    assert names(parts) == {"events"}
    kinds = {p.data["event"] for p in parts if p.event == "events"}
    assert {"on_chain_start", "on_chain_end", "on_chat_model_stream"} <= kinds, kinds


@pytest.mark.parametrize(
    ("modes", "expected"),
    [
        (["values", "updates"], {"values", "updates"}),
        (["values", "messages-tuple"], {"values", "messages"}),
        (["updates", "custom", "debug"], {"updates", "debug"}),
    ],
)
async def test_lists_of_modes_interleave_and_nothing_else_leaks(
    client: LangGraphClient, modes: list[str], expected: set[str]
) -> None:
    parts = await stream(client, modes)
    assert names(parts) == expected, names(parts)  # no tool call here: no custom event


async def test_error_event_on_failure(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"],
            GRAPH_ID,
            input={"messages": [{"role": "alien", "content": "x"}]},
            stream_mode=["values", "messages-tuple"],
        )
    ]
    assert parts[0].event == "metadata"
    error = [p for p in parts if p.event == "error"]
    assert len(error) == 1 and {"error", "message"} <= set(error[0].data)
    assert [p.event for p in parts].index("error") >= len(parts) - 2  # last, or before `end`
