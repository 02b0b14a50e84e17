"""Thread routes through `langgraph_sdk`: create, get, patch, delete, search, copy,
state (head, at a checkpoint, `POST /state/checkpoint`), update state, history."""

from __future__ import annotations

import itertools
import uuid

import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError

from tests.agent_protocol.conftest import (
    AGENT_ID,
    FAST_REPLY,
    GRAPH_ID,
    ask,
    message_types,
    reference_wrong,
)


async def one_turn(client: LangGraphClient, content: str = "hi") -> tuple[str, dict]:
    thread = await client.threads.create()
    values = await client.runs.wait(thread["thread_id"], GRAPH_ID, input=ask(content))
    return thread["thread_id"], values


async def test_create_get_with_metadata(client: LangGraphClient) -> None:
    thread = await client.threads.create(metadata={"purpose": "acceptance", "n": 1})
    uuid.UUID(thread["thread_id"])
    assert thread["metadata"]["purpose"] == "acceptance" and thread["metadata"]["n"] == 1
    assert thread["status"] == "idle"
    got = await client.threads.get(thread["thread_id"])
    assert got["thread_id"] == thread["thread_id"]
    assert got["metadata"]["purpose"] == "acceptance"
    for key in ("created_at", "updated_at", "status", "values"):
        assert key in got, key


async def test_create_with_a_chosen_id_and_if_exists(client: LangGraphClient) -> None:
    chosen = str(uuid.uuid4())
    made = await client.threads.create(thread_id=chosen, metadata={"v": 1})
    assert made["thread_id"] == chosen
    with pytest.raises(ConflictError):
        await client.threads.create(thread_id=chosen)
    with pytest.raises(ConflictError):
        await client.threads.create(thread_id=chosen, if_exists="raise")
    again = await client.threads.create(thread_id=chosen, if_exists="do_nothing", metadata={"v": 2})
    assert again["thread_id"] == chosen and again["metadata"]["v"] == 1


async def test_get_unknown_thread_is_404(client: LangGraphClient) -> None:
    with pytest.raises(NotFoundError):
        await client.threads.get(str(uuid.uuid4()))


async def test_patch_merges_metadata(client: LangGraphClient) -> None:
    thread = await client.threads.create(metadata={"a": 1, "keep": "yes"})
    updated = await client.threads.update(thread["thread_id"], metadata={"a": 2, "b": 3})
    assert {k: updated["metadata"][k] for k in ("a", "b", "keep")} == {
        "a": 2,
        "b": 3,
        "keep": "yes",
    }
    got = await client.threads.get(thread["thread_id"])
    assert {k: got["metadata"][k] for k in ("a", "b", "keep")} == {"a": 2, "b": 3, "keep": "yes"}


async def test_delete(client: LangGraphClient) -> None:
    thread_id, _ = await one_turn(client)
    await client.threads.delete(thread_id)
    with pytest.raises(NotFoundError):
        await client.threads.get(thread_id)
    with pytest.raises(NotFoundError):
        await client.threads.get_state(thread_id)
    with pytest.raises(NotFoundError):
        await client.threads.delete(thread_id)


async def test_search_by_metadata_status_limit_offset_sort(client: LangGraphClient) -> None:
    tag = uuid.uuid4().hex
    made = [
        (await client.threads.create(metadata={"suite": tag, "n": n}))["thread_id"]
        for n in range(3)
    ]
    found = await client.threads.search(metadata={"suite": tag}, limit=10)
    assert sorted(t["thread_id"] for t in found) == sorted(made)
    assert [
        t["thread_id"] for t in await client.threads.search(metadata={"suite": tag, "n": 1})
    ] == [made[1]]

    ascending = await client.threads.search(
        metadata={"suite": tag}, sort_by="created_at", sort_order="asc"
    )
    assert [t["thread_id"] for t in ascending] == made
    descending = await client.threads.search(
        metadata={"suite": tag}, sort_by="created_at", sort_order="desc"
    )
    assert [t["thread_id"] for t in descending] == made[::-1]

    page = await client.threads.search(
        metadata={"suite": tag}, limit=2, offset=0, sort_by="created_at", sort_order="asc"
    )
    rest = await client.threads.search(
        metadata={"suite": tag}, limit=2, offset=2, sort_by="created_at", sort_order="asc"
    )
    assert [t["thread_id"] for t in page] == made[:2]
    assert [t["thread_id"] for t in rest] == made[2:]

    idle = await client.threads.search(metadata={"suite": tag}, status="idle")
    assert len(idle) == 3
    assert await client.threads.search(metadata={"suite": tag}, status="busy") == []
    assert await client.threads.search(metadata={"suite": uuid.uuid4().hex}) == []


async def test_a_run_stamps_graph_and_assistant_into_thread_metadata(
    client: LangGraphClient,
) -> None:
    thread_id, _ = await one_turn(client)
    thread = await client.threads.get(thread_id)
    assert thread["metadata"]["graph_id"] == GRAPH_ID
    assert thread["metadata"]["assistant_id"] == AGENT_ID
    # Agent Chat UI's sidebar query.
    found = await client.threads.search(metadata={"graph_id": GRAPH_ID}, limit=100)
    assert thread_id in [t["thread_id"] for t in found]
    assert message_types(thread["values"]) == ["human", "ai"]


async def test_fresh_thread_state_is_empty(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"] in ({}, None)
    assert state["next"] == []
    assert state["checkpoint"] is None  # useStream: "no history"


async def test_state_at_head_and_at_a_checkpoint(client: LangGraphClient) -> None:
    thread_id, values = await one_turn(client)
    head = await client.threads.get_state(thread_id)
    assert message_types(head["values"]) == ["human", "ai"]
    assert head["values"]["messages"][-1]["content"] == FAST_REPLY
    assert head["next"] == []
    assert head["checkpoint"]["thread_id"] == thread_id
    assert head["checkpoint"]["checkpoint_id"]
    assert head["parent_checkpoint"] and head["parent_checkpoint"]["checkpoint_id"]
    assert isinstance(head["metadata"], dict)
    assert head["values"] == values

    history = await client.threads.get_history(thread_id, limit=10)
    first_step = next(s for s in history if message_types(s["values"]) == ["human"])
    checkpoint_id = first_step["checkpoint"]["checkpoint_id"]
    at = await client.threads.get_state(thread_id, checkpoint_id=checkpoint_id)
    assert at["checkpoint"]["checkpoint_id"] == checkpoint_id
    assert message_types(at["values"]) == ["human"]
    assert at["next"] == first_step["next"]


async def test_post_state_checkpoint(client: LangGraphClient) -> None:
    """RemoteGraph.get_state always goes through `POST /threads/{id}/state/checkpoint`."""
    thread_id, _ = await one_turn(client)
    head = await client.threads.get_state(thread_id, checkpoint={"thread_id": thread_id})
    assert message_types(head["values"]) == ["human", "ai"]
    parent = head["parent_checkpoint"]["checkpoint_id"]
    older = await client.threads.get_state(
        thread_id, checkpoint={"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": parent}
    )
    assert older["checkpoint"]["checkpoint_id"] == parent
    assert older["values"] != head["values"] or older["next"] != head["next"]


async def test_update_state_as_node(client: LangGraphClient) -> None:
    thread_id, _ = await one_turn(client)
    before = await client.threads.get_state(thread_id)
    answer = await client.threads.update_state(
        thread_id,
        {"messages": [{"type": "ai", "content": "edited by a person", "id": "edited-1"}]},
        as_node="model",
    )
    assert answer["checkpoint"]["thread_id"] == thread_id
    new_id = answer["checkpoint"]["checkpoint_id"]
    assert new_id and new_id != before["checkpoint"]["checkpoint_id"]
    after = await client.threads.get_state(thread_id)
    assert after["checkpoint"]["checkpoint_id"] == new_id
    assert message_types(after["values"]) == ["human", "ai", "ai"]
    assert after["values"]["messages"][-1]["content"] == "edited by a person"
    assert after["metadata"]["source"] == "update"
    # As if `model` had just run: its edge decides what comes next (no tool call → persist).
    assert after["next"] == ["persist"]


async def test_history_limit_and_before(client: LangGraphClient) -> None:
    thread_id, _ = await one_turn(client)
    full = await client.threads.get_history(thread_id, limit=100)
    assert len(full) >= 3
    ids = [s["checkpoint"]["checkpoint_id"] for s in full]
    assert len(set(ids)) == len(ids)
    assert message_types(full[0]["values"]) == ["human", "ai"]  # newest first
    assert message_types(full[-1]["values"]) == []  # the input checkpoint, before any step
    two = await client.threads.get_history(thread_id, limit=2)
    assert [s["checkpoint"]["checkpoint_id"] for s in two] == ids[:2]
    # `before` as a RunnableConfig, as the JS SDK (Studio, useStream) types it.
    older = await client.threads.get_history(
        thread_id, limit=100, before={"configurable": {"checkpoint_id": ids[0]}}
    )
    assert [s["checkpoint"]["checkpoint_id"] for s in older] == ids[1:]
    one = await client.threads.get_history(
        thread_id, limit=1, before={"configurable": {"checkpoint_id": ids[1]}}
    )
    assert [s["checkpoint"]["checkpoint_id"] for s in one] == ids[2:3]
    for state, parent in itertools.pairwise(full):
        assert state["parent_checkpoint"]["checkpoint_id"] == parent["checkpoint"]["checkpoint_id"]


@reference_wrong(
    "`before` as the Python SDK types it (a checkpoint id, or a Checkpoint object as "
    "RemoteGraph.get_state_history sends it) is a 422 / a 500 (KeyError 'configurable') "
    "in langgraph-api 0.16.7"
)
@pytest.mark.parametrize("form", ["checkpoint", "checkpoint_id"])
async def test_history_before_as_the_python_sdk_types_it(
    client: LangGraphClient, form: str
) -> None:
    thread_id, _ = await one_turn(client)
    full = await client.threads.get_history(thread_id, limit=100)
    ids = [s["checkpoint"]["checkpoint_id"] for s in full]
    before = full[0]["checkpoint"] if form == "checkpoint" else ids[0]
    older = await client.threads.get_history(thread_id, limit=100, before=before)
    assert [s["checkpoint"]["checkpoint_id"] for s in older] == ids[1:]


async def test_copy(client: LangGraphClient) -> None:
    thread_id, values = await one_turn(client)
    copied = await client.threads.copy(thread_id)
    assert copied["thread_id"] != thread_id
    state = await client.threads.get_state(copied["thread_id"])
    assert state["values"]["messages"] == values["messages"]
    # The copy is its own thread: a turn on it leaves the original alone.
    await client.runs.wait(copied["thread_id"], GRAPH_ID, input=ask("again"))
    assert message_types((await client.threads.get_state(thread_id))["values"]) == ["human", "ai"]
    assert message_types((await client.threads.get_state(copied["thread_id"]))["values"]) == [
        "human",
        "ai",
        "human",
        "ai",
    ]


async def test_copy_a_checkpoint_as_studio_re_runs_from_here(client: LangGraphClient) -> None:
    """Studio's "re-run from here": `values: null, as_node: "__copy__"` at a checkpoint."""
    thread_id, _ = await one_turn(client)
    history = await client.threads.get_history(thread_id, limit=10)
    chosen = history[1]
    answer = await client.threads.update_state(
        thread_id, None, as_node="__copy__", checkpoint=chosen["checkpoint"]
    )
    copied = answer["checkpoint"]["checkpoint_id"]
    assert copied not in [s["checkpoint"]["checkpoint_id"] for s in history]
    head = await client.threads.get_state(thread_id)
    assert head["checkpoint"]["checkpoint_id"] == copied
    assert head["values"]["messages"] == chosen["values"]["messages"]
    assert head["next"] == chosen["next"]


async def test_store_routes_studio_calls_answer_empty(client: LangGraphClient) -> None:
    """Studio's Memory tab lists namespaces; a 404 there broke it (Aegra 07d987a)."""
    assert (await client.store.list_namespaces())["namespaces"] == []
    assert (await client.store.search_items(("memories",)))["items"] == []
