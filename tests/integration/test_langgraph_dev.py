"""`langgraph dev` serves the repo's graph: the real CLI as a subprocess, offline,
driven over HTTP by `langgraph_sdk`.

Runs from the repo root with the repo's own `langgraph.json`, exactly like
`make studio`. Side effect: the in-memory runtime pickles its state into
`./.langgraph_api/` (the CWD; not configurable, gitignored).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.support.langgraph_dev import langgraph_dev as serve_langgraph_dev


@pytest.fixture
def langgraph_dev(tmp_path: Path) -> Iterator[str]:
    """Start `langgraph dev` on a free port, yield its base URL, always stop it."""
    with serve_langgraph_dev(tmp_path) as url:
        yield url


def _message_events(events: list[Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(part.data[0], part.data[1]) for part in events if part.event == "messages"]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_langgraph_dev_serves_agent_graph(langgraph_dev: str) -> None:
    async with get_client(url=langgraph_dev, timeout=30.0) as client:
        # 1. The graph from langgraph.json is registered as an assistant.
        assistants = await client.assistants.search(graph_id="agent")
        assert assistants, "no assistant for graph_id='agent'"
        assistant_id = assistants[0]["assistant_id"]

        # 2. Its topology is the agent loop.
        drawn = await client.assistants.get_graph(assistant_id)
        node_ids = {node["id"] for node in drawn["nodes"]}
        assert {"model", "tools", "persist"} <= node_ids, node_ids

        # 3-4. A streamed run on a fresh thread.
        thread = await client.threads.create()
        thread_id = thread["thread_id"]
        try:
            events = [
                part
                async for part in client.runs.stream(
                    thread_id,
                    assistant_id,
                    input={"messages": [{"role": "user", "content": "Calculate 10 * 20"}]},
                    stream_mode="messages-tuple",
                )
            ]
            names = [part.event for part in events]
            assert "error" not in names, [part for part in events if part.event == "error"]
            assert names[0] == "metadata", names
            run_id = events[0].data["run_id"]

            messages = _message_events(events)
            assert messages, names
            ai_chunks = [
                (message, meta)
                for message, meta in messages
                if message["type"] in ("AIMessageChunk", "ai")
            ]
            assert ai_chunks, messages
            assert {meta["langgraph_node"] for _, meta in ai_chunks} == {"model"}
            # Offline, never an upstream model.
            model_names = {
                message["response_metadata"].get("model_name")
                for message, _ in ai_chunks
                if message["response_metadata"].get("model_name")
            }
            assert model_names == {"offline"}, model_names
            streamed_calls = [call for message, _ in ai_chunks for call in message["tool_calls"]]
            assert [call["name"] for call in streamed_calls] == ["calculator"]
            text = "".join(str(message["content"]) for message, _ in ai_chunks)
            assert "200" in text
            assert text == "10 * 20 = 200"
            tool_events = [(m, meta) for m, meta in messages if m["type"] == "tool"]
            assert [(m["name"], meta["langgraph_node"]) for m, meta in tool_events] == [
                ("calculator", "tools")
            ]

            run = await client.runs.get(thread_id, run_id)
            assert run["status"] == "success", run

            # 5. The thread's final state holds the whole turn.
            state = await client.threads.get_state(thread_id)
            assert state["next"] == []
            history = state["values"]["messages"]
            assert [m["type"] for m in history] == ["human", "ai", "tool", "ai"]
            final = history[-1]
            assert final["content"] == "10 * 20 = 200"
            assert final["tool_calls"] == []
            tool_message = history[2]
            assert tool_message["name"] == "calculator"
            assert tool_message["status"] == "success"
            assert tool_message["tool_call_id"] == history[1]["tool_calls"][0]["id"]
            assert json.loads(tool_message["content"])["result"] == 200
        finally:
            # `.langgraph_api/` in the repo persists threads across restarts (and shows them
            # in Studio): leave nothing behind, without masking the real failure.
            with contextlib.suppress(httpx.HTTPError):
                await client.threads.delete(thread_id)
