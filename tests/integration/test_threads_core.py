"""`Threads` on real parts, wired as the app wires them (`open_run_core`): the SQL
transcript (SQLite file, PostgreSQL), the checkpointer and run store (embedded, or
Redis), and the real graph answering with the offline model.

What it pins: sessions and threads are one row (a REST session is found by search, a
thread is listed as a session), ownership (a stranger gets 404 on every method),
statuses (busy from the run store's slot, interrupted from the state, error from
the last run), metadata merge and containment search, state/history/update_state
(incl. `__copy__` and forks from a checkpoint), copy and delete.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from agent_server.errors import InvalidRequest, ThreadBusy, ThreadExists, ThreadNotFound
from agent_server.graph.builder import build_graph
from agent_server.graph.state import FLAGS_KEY, RunFlags, RunOptions, new_turn
from agent_server.persistence.checkpointer import open_checkpointer
from agent_server.resources import Resources, build_resources
from agent_server.runs.core import open_run_core
from agent_server.runs.store import RunStore
from agent_server.runs.threads import Threads
from tests.conftest import make_settings
from tests.support.postgres import temporary_database
from tests.support.redis import delete_prefix, require_redis, unique_prefix

ALICE = "key:alice"
BOB = "key:bob"


@dataclass
class Core:
    threads: Threads
    store: RunStore
    resources: Resources
    graph: Any

    async def turn(self, thread_id: str, message: str, owner: str = ALICE) -> dict:
        """One turn the way the REST surface runs it (the persist node writes SQL)."""
        turn_id = str(uuid.uuid4())
        return await self.graph.ainvoke(
            new_turn(message, turn_id),
            {
                "configurable": {"thread_id": thread_id, FLAGS_KEY: RunFlags(principal=owner)},
                "run_id": turn_id,
            },
            context=RunOptions(),
        )


@pytest.fixture(params=["sqlite", "postgres", "redis"])
async def core(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Core]:
    """The app's own wiring (`open_run_core`): embedded checkpoints and run store on
    SQLite; the same on PostgreSQL; Redis checkpoints and run store (+ SQLite SQL)."""
    if request.param == "postgres":
        async with temporary_database() as url:
            async for built in _core(tmp_path, database_url=url):
                yield built
    elif request.param == "redis":
        url = require_redis()
        prefix = unique_prefix("threads")
        try:
            async for built in _core(tmp_path, redis_url=url, redis_key_prefix=prefix):
                yield built
        finally:
            delete_prefix(url, prefix)
    else:
        async for built in _core(tmp_path):
            yield built


async def _core(tmp_path: Path, **overrides: object) -> AsyncIterator[Core]:
    settings = make_settings(tmp_path, **overrides)
    resources = build_resources(settings)
    await resources.prepare()
    try:
        async with open_checkpointer(settings, resources.redis) as saver:
            graph = build_graph(resources.deps, checkpointer=saver)
            async with open_run_core(
                resources, graph=graph, checkpointer=saver, metrics=resources.deps.metrics
            ) as run_core:
                yield Core(run_core.threads, run_core.store, resources, graph)
    finally:
        await resources.aclose()


async def test_a_thread_is_a_session_and_a_session_is_a_thread(core: Core) -> None:
    session = await core.resources.transcript.create_session(ALICE)
    found = await core.threads.search(ALICE)
    assert [t.thread_id for t in found] == [session.id]
    assert found[0].status == "idle" and found[0].values == {}

    thread = await core.threads.create(ALICE, metadata={"graph_id": "agent"})
    sessions = await core.resources.transcript.list_sessions(ALICE, limit=10, offset=0)
    assert {s.id for s in sessions} == {session.id, thread.thread_id}

    await core.turn(thread.thread_id, "what is 6 * 7?")
    again = await core.threads.get(ALICE, thread.thread_id)
    kinds = [m.type for m in again.values["messages"]]
    assert kinds[0] == "human" and kinds[-1] == "ai" and "42" in again.values["messages"][-1].text
    assert again.values["last_turn"]["response"] == again.values["messages"][-1].text
    turns = await core.resources.transcript.list_turns(thread.thread_id, limit=10)
    assert len(turns) == 1 and turns[0].user_message == "what is 6 * 7?"


async def test_client_chosen_ids_and_if_exists(core: Core) -> None:
    chosen = str(uuid.uuid4())
    thread = await core.threads.create(ALICE, thread_id=chosen, metadata={"a": 1})
    assert thread.thread_id == chosen and thread.metadata == {"a": 1}
    with pytest.raises(ThreadExists):
        await core.threads.create(ALICE, thread_id=chosen)
    same = await core.threads.create(
        ALICE, thread_id=chosen, metadata={"b": 2}, if_exists="do_nothing"
    )
    assert same.metadata == {"a": 1}
    with pytest.raises(ThreadExists):  # someone else's id: never handed over
        await core.threads.create(BOB, thread_id=chosen, if_exists="do_nothing")


async def test_strangers_get_not_found_everywhere(core: Core) -> None:
    thread = await core.threads.create(ALICE)
    tid = thread.thread_id
    await core.turn(tid, "hello")
    calls = [
        core.threads.get(BOB, tid),
        core.threads.update(BOB, tid, {"x": 1}),
        core.threads.delete(BOB, tid),
        core.threads.copy(BOB, tid),
        core.threads.state(BOB, tid),
        core.threads.update_state(BOB, tid, {"messages": []}),
        core.threads.history(BOB, tid),
    ]
    for call in calls:
        with pytest.raises(ThreadNotFound):
            await call
    assert await core.threads.search(BOB) == []
    assert (await core.threads.get(ALICE, tid)).metadata == {}


async def test_metadata_merges_and_search_filters_and_sorts(core: Core) -> None:
    first = await core.threads.create(ALICE, metadata={"graph_id": "agent", "n": 1})
    second = await core.threads.create(
        ALICE, metadata={"graph_id": "agent", "n": 2, "deep": {"k": [1, 2]}}
    )
    other = await core.threads.create(ALICE, metadata={"graph_id": "other", "flag": True})
    await core.threads.create(BOB, metadata={"graph_id": "agent"})

    merged = await core.threads.update(ALICE, first.thread_id, {"n": 10, "user": "x"})
    assert merged.metadata == {"graph_id": "agent", "n": 10, "user": "x"}

    agent = await core.threads.search(ALICE, metadata={"graph_id": "agent"})
    assert {t.thread_id for t in agent} == {first.thread_id, second.thread_id}
    assert agent[0].thread_id == first.thread_id  # updated last: newest first
    assert [t.thread_id for t in await core.threads.search(ALICE, metadata={"n": 2})] == [
        second.thread_id
    ]
    assert [t.thread_id for t in await core.threads.search(ALICE, metadata={"flag": True})] == [
        other.thread_id
    ]
    deep = await core.threads.search(ALICE, metadata={"deep": {"k": [1, 2]}})
    assert [t.thread_id for t in deep] == [second.thread_id]
    assert await core.threads.search(ALICE, metadata={"graph_id": "nope"}) == []
    ids = await core.threads.search(
        ALICE, ids=[other.thread_id, first.thread_id], sort_by="created_at", sort_order="asc"
    )
    assert [t.thread_id for t in ids] == [first.thread_id, other.thread_id]
    page = await core.threads.search(
        ALICE, sort_by="created_at", sort_order="asc", limit=1, offset=1
    )
    assert [t.thread_id for t in page] == [second.thread_id]
    assert await core.threads.count(ALICE, metadata={"graph_id": "agent"}) == 2
    assert await core.threads.count(ALICE) == 3
    assert await core.threads.count(ALICE, status="idle") == 3
    assert await core.threads.count(BOB, metadata={"flag": True}) == 0

    # NUL cannot live in PostgreSQL text/JSONB: stored (and searched) as U+FFFD.
    nul = await core.threads.create(ALICE, metadata={"k": "a\x00b"})
    assert nul.metadata == {"k": "a\ufffdb"}
    found = await core.threads.search(ALICE, metadata={"k": "a\x00b"})
    assert [t.thread_id for t in found] == [nul.thread_id]
    patched = await core.threads.update(ALICE, nul.thread_id, {"j": "\x00"})
    assert patched.metadata["j"] == "\ufffd"


async def test_status_busy_interrupted_error(core: Core) -> None:
    thread = await core.threads.create(ALICE)
    tid = thread.thread_id
    assert (await core.threads.get(ALICE, tid)).status == "idle"
    assert await core.store.take(tid, "run-1")
    assert (await core.threads.get(ALICE, tid)).status == "busy"
    assert [t.thread_id for t in await core.threads.search(ALICE, status="busy")] == [tid]
    assert await core.threads.search(ALICE, status="idle") == []
    with pytest.raises(ThreadBusy):
        await core.threads.delete(ALICE, tid)
    await core.store.free(tid, "run-1")

    errored = await core.threads.settle(
        ALICE, tid, error={"error": "ValueError", "message": "boom"}
    )
    assert errored.status == "error" and errored.error == {"error": "ValueError", "message": "boom"}
    assert [t.thread_id for t in await core.threads.search(ALICE, status="error")] == [tid]
    assert (await core.threads.settle(ALICE, tid)).status == "idle"

    # A graph that stopped with work left (a breakpoint before "tools") is interrupted.
    await core.threads.update_state(
        ALICE,
        tid,
        {
            "messages": [
                HumanMessage("2+2", id="h1"),
                AIMessage(
                    "",
                    id="a1",
                    tool_calls=[{"name": "calculator", "args": {"expression": "2+2"}, "id": "c1"}],
                ),
            ]
        },
        as_node="model",
    )
    state = await core.threads.state(ALICE, tid)
    assert state.next == ("approve",)
    assert (await core.threads.get(ALICE, tid)).status == "interrupted"
    assert [t.thread_id for t in await core.threads.search(ALICE, status="interrupted")] == [tid]


async def test_state_history_checkpoints_and_forks(core: Core) -> None:
    thread = await core.threads.create(ALICE)
    tid = thread.thread_id
    empty = await core.threads.state(ALICE, tid)
    assert empty.values == {} and empty.created_at is None and empty.next == ()
    await core.turn(tid, "what is 2 + 3?")
    await core.turn(tid, "and 10 * 20?")

    head = await core.threads.state(ALICE, tid)
    assert head.next == () and len(head.values["messages"]) >= 4
    history = await core.threads.history(ALICE, tid, limit=100)
    assert history[0].config == head.config  # newest first
    assert len(history) > 4
    assert len(await core.threads.history(ALICE, tid, limit=2)) == 2
    older = await core.threads.history(
        ALICE, tid, limit=100, before=history[1].config["configurable"]
    )
    assert [h.config for h in older] == [h.config for h in history[2:]]
    inputs = await core.threads.history(ALICE, tid, limit=100, metadata={"source": "input"})
    assert inputs and all(h.metadata["source"] == "input" for h in inputs)

    # The state at a checkpoint, and a checkpoint the thread lacks.
    past = history[3]
    at = await core.threads.state(
        ALICE, tid, checkpoint_id=past.config["configurable"]["checkpoint_id"]
    )
    assert at.values == past.values
    at2 = await core.threads.state(
        ALICE, tid, checkpoint={"thread_id": "ignored", **past.config["configurable"]}
    )
    assert at2.values == past.values
    with pytest.raises(ThreadNotFound):
        await core.threads.state(ALICE, tid, checkpoint_id=str(uuid.uuid4()))

    # Fork: update the state at a past checkpoint; the new head descends from it.
    fork_of = next(h for h in history if h.next == ("model",) and len(h.values["messages"]) == 1)
    written = await core.threads.update_state(
        ALICE,
        tid,
        {"messages": [HumanMessage("edited", id="edited")]},
        as_node="__start__",
        checkpoint=fork_of.config["configurable"],
    )
    assert written["thread_id"] == tid and written["checkpoint_id"]
    forked = await core.threads.state(ALICE, tid)
    assert forked.config["configurable"]["checkpoint_id"] == written["checkpoint_id"]
    assert [m.text for m in forked.values["messages"]][-1] == "edited"

    # `__copy__` (Studio's "re-run from here"): the head becomes a copy of a checkpoint.
    copied = await core.threads.update_state(
        ALICE,
        tid,
        None,
        as_node="__copy__",
        checkpoint_id=head.config["configurable"]["checkpoint_id"],
    )
    now = await core.threads.state(ALICE, tid)
    assert now.config["configurable"]["checkpoint_id"] == copied["checkpoint_id"]
    assert now.values["messages"] == head.values["messages"]

    for values, as_node in (
        ({"messages": []}, "no_such_node"),
        ({"messages": 5}, "model"),  # LangChain: NotImplementedError
        ([1, 2], "model"),
        ({"messages": [{"role": "alien", "content": "x"}]}, "model"),
    ):
        with pytest.raises(InvalidRequest):
            await core.threads.update_state(ALICE, tid, values, as_node=as_node)


async def test_copy_and_delete(core: Core) -> None:
    thread = await core.threads.create(ALICE, metadata={"k": "v"})
    tid = thread.thread_id
    await core.turn(tid, "what is 3 * 3?")
    original = await core.threads.state(ALICE, tid)

    copy = await core.threads.copy(ALICE, tid)
    assert copy.thread_id != tid and copy.metadata == {"k": "v"}
    assert copy.values["messages"] == original.values["messages"]
    copy_history = await core.threads.history(ALICE, copy.thread_id, limit=100)
    assert len(copy_history) == len(await core.threads.history(ALICE, tid, limit=100))

    await core.threads.delete(ALICE, tid)
    with pytest.raises(ThreadNotFound):
        await core.threads.get(ALICE, tid)
    assert await core.resources.transcript.list_turns(tid, limit=10) == []
    assert await core.threads.history(ALICE, copy.thread_id, limit=1)  # the copy stays
    # Its checkpoints are gone too: a new thread under the same id starts empty.
    again = await core.threads.create(ALICE, thread_id=tid)
    assert again.values == {}
