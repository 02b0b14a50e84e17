"""Forks: Agent Chat UI's / Studio's "edit a message" and "regenerate" run from an earlier
checkpoint. The branch must hold exactly that checkpoint's history (AGENT-PROTOCOL.md
§8.1: our model node used to restore the SQL transcript into a short history)."""

from __future__ import annotations

from typing import Any

from langgraph_sdk.client import LangGraphClient

from tests.agent_protocol.conftest import (
    FAST_REPLY,
    GRAPH_ID,
    ask,
    message_types,
    reference_wrong,
)


async def two_turns(client: LangGraphClient) -> str:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, GRAPH_ID, input=ask("first question"))
    await client.runs.wait(tid, GRAPH_ID, input=ask("second question"))
    return tid


def first_seen(history: list[dict[str, Any]], content: str) -> dict[str, Any]:
    """The oldest state holding a human message `content` (useStream's firstSeenState)."""
    holding = [
        s
        for s in history
        if any(
            m["type"] == "human" and m["content"] == content
            for m in s["values"].get("messages", [])
        )
    ]
    return holding[-1]  # history is newest first


def without_thread_id(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in checkpoint.items() if k != "thread_id"}  # as useStream sends it


@reference_wrong(
    "under `langgraph dev` the graph cannot tell a fork from a lost history, so its model "
    "node restores the SQL transcript and the branch regains the old turns (§8.1)",
    kind="our graph under the reference",
)
async def test_edit_the_first_message(client: LangGraphClient) -> None:
    tid = await two_turns(client)
    history = await client.threads.get_history(tid, limit=100)
    parent = first_seen(history, "first question")["parent_checkpoint"]
    values = await client.runs.wait(
        tid, GRAPH_ID, input=ask("edited first"), checkpoint=without_thread_id(parent)
    )
    assert message_types(values) == ["human", "ai"], values
    assert [m["content"] for m in values["messages"]] == ["edited first", FAST_REPLY]
    state = await client.threads.get_state(tid)
    assert [m["content"] for m in state["values"]["messages"]] == ["edited first", FAST_REPLY]
    # The old branch is still in the history, under its own checkpoints.
    everything = await client.threads.get_history(tid, limit=100)
    assert any("second question" in str(s["values"]) for s in everything)


async def test_edit_the_second_message(client: LangGraphClient) -> None:
    tid = await two_turns(client)
    history = await client.threads.get_history(tid, limit=100)
    parent = first_seen(history, "second question")["parent_checkpoint"]
    values = await client.runs.wait(
        tid, GRAPH_ID, input=ask("edited second"), checkpoint=without_thread_id(parent)
    )
    contents = [m["content"] for m in values["messages"]]
    assert contents == ["first question", FAST_REPLY, "edited second", FAST_REPLY]


async def test_regenerate_from_a_checkpoint_with_null_input(client: LangGraphClient) -> None:
    tid = await two_turns(client)
    history = await client.threads.get_history(tid, limit=100)
    # The state right after the second question was applied, before the model ran.
    before_answer = next(
        s
        for s in reversed(history)
        if s["next"] == ["model"] and "second question" in str(s["values"])
    )
    values = await client.runs.wait(
        tid, GRAPH_ID, input=None, checkpoint=without_thread_id(before_answer["checkpoint"])
    )
    contents = [m["content"] for m in values["messages"]]
    assert contents == ["first question", FAST_REPLY, "second question", FAST_REPLY]
