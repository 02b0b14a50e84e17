"""`RemoteGraph` (langgraph's client-side graph over the Platform API) and the SDK's
sync client: invoke, stream, state, history, stateless, the drawn graph."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_sync_client

from tests.agent_protocol.conftest import FAST_REPLY, GRAPH_ID, Target


@pytest.fixture
def remote(target: Target) -> Iterator[RemoteGraph]:
    graph = RemoteGraph(GRAPH_ID, url=target.url, api_key=target.api_key)
    yield graph


def thread_config() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}  # if_not_exists=create


def texts(values: dict) -> list[str]:
    return [m.content if hasattr(m, "content") else m["content"] for m in values["messages"]]


async def test_ainvoke_creates_the_thread_and_keeps_it(remote: RemoteGraph) -> None:
    config = thread_config()
    values = await remote.ainvoke({"messages": [HumanMessage("hi")]}, config)
    assert texts(values) == ["hi", FAST_REPLY]
    again = await remote.ainvoke({"messages": [{"role": "human", "content": "more"}]}, config)
    assert texts(again) == ["hi", FAST_REPLY, "more", FAST_REPLY]


async def test_astream_values_and_updates(remote: RemoteGraph) -> None:
    config = thread_config()
    values = [
        chunk
        async for chunk in remote.astream(
            {"messages": [HumanMessage("hi")]}, config, stream_mode="values"
        )
    ]
    assert texts(values[0]) == ["hi"] and texts(values[-1]) == ["hi", FAST_REPLY]
    updates = [
        chunk
        async for chunk in remote.astream(
            {"messages": [HumanMessage("again")]}, config, stream_mode="updates"
        )
    ]
    nodes = [node for chunk in updates for node in chunk]
    assert nodes[0] == "model" and "persist" in nodes, nodes
    multi = [
        chunk
        async for chunk in remote.astream(
            {"messages": [HumanMessage("third")]}, config, stream_mode=["values", "messages"]
        )
    ]
    # Several modes: RemoteGraph yields the SDK's StreamPart(event, data) per chunk.
    modes = {part.event for part in multi}
    assert modes == {"values", "messages"}, modes
    streamed = "".join(str(part.data[0]["content"]) for part in multi if part.event == "messages")
    assert streamed == FAST_REPLY


async def test_aget_state_and_history(remote: RemoteGraph) -> None:
    config = thread_config()
    await remote.ainvoke({"messages": [HumanMessage("hi")]}, config)
    state = await remote.aget_state(config)
    assert texts(state.values) == ["hi", FAST_REPLY]
    assert state.next == ()
    assert state.config["configurable"]["checkpoint_id"]
    assert state.metadata is not None and "step" in state.metadata
    history = [snapshot async for snapshot in remote.aget_state_history(config)]
    assert len(history) >= 3
    assert (
        history[0].config["configurable"]["checkpoint_id"]
        == (state.config["configurable"]["checkpoint_id"])
    )
    limited = [snapshot async for snapshot in remote.aget_state_history(config, limit=2)]
    assert [s.config["configurable"]["checkpoint_id"] for s in limited] == [
        s.config["configurable"]["checkpoint_id"] for s in history[:2]
    ]


async def test_stateless_ainvoke(remote: RemoteGraph) -> None:
    values = await remote.ainvoke({"messages": [HumanMessage("no thread")]})
    assert texts(values) == ["no thread", FAST_REPLY]


def test_get_graph_draws_the_agent_loop(remote: RemoteGraph) -> None:
    drawn = remote.get_graph()
    assert {"model", "tools", "persist"} <= set(drawn.nodes)
    assert any(e.source == "tools" and e.target == "model" for e in drawn.edges)
    xray = remote.get_graph(xray=True)
    assert {"model", "tools", "persist"} <= set(xray.nodes)


def test_sync_client(target: Target) -> None:
    with get_sync_client(url=target.url, api_key=target.api_key) as client:
        thread = client.threads.create(metadata={"sync": True})
        values = client.runs.wait(
            thread["thread_id"],
            GRAPH_ID,
            input={"messages": [{"role": "human", "content": "sync"}]},
        )
        assert texts(values) == ["sync", FAST_REPLY]
        parts = list(
            client.runs.stream(
                thread["thread_id"],
                GRAPH_ID,
                input={"messages": [{"role": "human", "content": "again"}]},
                stream_mode="updates",
            )
        )
        assert parts[0].event == "metadata"
        assert client.threads.get(thread["thread_id"])["metadata"]["sync"] is True
        assert isinstance(client.assistants.search(graph_id=GRAPH_ID), list)


def test_remote_messages_are_langchain_messages(remote: RemoteGraph) -> None:
    values = remote.invoke({"messages": [HumanMessage("sync invoke")]}, thread_config())
    assert texts(values) == ["sync invoke", FAST_REPLY]
    assert not isinstance(values["messages"][0], AIMessage)
