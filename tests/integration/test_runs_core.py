"""The run core without HTTP: `Runs` over the real graph, real checkpointer and real
stores (in-process, and Redis shared by two `Runs` as two replicas).

The upstream is the fake OpenAI-compatible server, slowed down where a run must last
long enough to be joined, queued behind, interrupted or cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_server.config import Settings
from agent_server.errors import (
    BadRunRequest,
    BudgetExceeded,
    RunNotFound,
    ThreadBusy,
    ThreadNotFound,
)
from agent_server.graph.builder import build_graph
from agent_server.observability.metrics import Metrics
from agent_server.persistence.checkpointer import open_checkpointer
from agent_server.persistence.instrumented import InstrumentedSaver
from agent_server.resources import build_resources
from agent_server.runs.budget import token_budget
from agent_server.runs.core import open_run_core
from agent_server.runs.runs import RunRequest, Runs
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, fail, fake_upstream, text
from tests.support.redis import delete_prefix, require_redis, unique_prefix

MODEL = "fake/model"
ALICE, BOB = "key:alice", "key:bob"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    # One per test: langchain-openai caches an httpx client per base URL, whose pooled
    # connections belong to the event loop of the test that opened them.
    with fake_upstream() as server:
        yield server


@dataclass
class Core:
    runs: Runs
    settings: Settings
    transcript: Any
    checkpointer: Any


@asynccontextmanager
async def open_core(settings: Settings, *, replica: str | None = None) -> AsyncIterator[Core]:
    metrics = Metrics()
    resources = build_resources(settings, metrics=metrics)
    await resources.prepare()
    try:
        async with open_checkpointer(settings, resources.redis) as saver:
            checkpointer = InstrumentedSaver(saver, metrics.checkpointer_latency)
            graph = build_graph(resources.deps, checkpointer=checkpointer)
            async with open_run_core(
                resources,
                graph=graph,
                checkpointer=checkpointer,
                metrics=metrics,
                budget=token_budget(settings, resources.redis),
                replica_id=replica,
            ) as core:
                yield Core(core.runs, settings, resources.transcript, checkpointer)
    finally:
        await resources.aclose()


def core_settings(tmp_path: Path, upstream: FakeUpstream, **overrides: Any) -> Settings:
    return make_settings(
        tmp_path,
        openrouter_api_key="sk-test",
        openrouter_base_url=upstream.base_url,
        agent_models=[MODEL],
        **overrides,
    )


@asynccontextmanager
async def two_replicas(
    tmp_path: Path, upstream: FakeUpstream, name: str
) -> AsyncIterator[tuple[Core, Core]]:
    """Replicas a and b on one Redis prefix and one SQL file, as behind a load balancer."""
    url = require_redis()
    prefix = unique_prefix(name)
    database = tmp_path / "shared.db"
    settings = core_settings(
        tmp_path,
        upstream,
        redis_url=url,
        redis_key_prefix=prefix,
        database_url=f"sqlite+aiosqlite:///{database}",
    )
    try:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(open_core(settings, replica="a"))
            b = await stack.enter_async_context(open_core(settings, replica="b"))
            yield a, b
    finally:
        delete_prefix(url, prefix)


@pytest.fixture(params=["local", "redis"])
async def core(request: pytest.FixtureRequest, tmp_path: Path, upstream: FakeUpstream):  # type: ignore[no-untyped-def]
    upstream.reset()
    overrides: dict[str, Any] = {}
    prefix = None
    if request.param == "redis":
        url = require_redis()
        prefix = unique_prefix("runs")
        overrides = {"redis_url": url, "redis_key_prefix": prefix}
    async with open_core(core_settings(tmp_path, upstream, **overrides)) as opened:
        yield opened
    if prefix is not None:
        delete_prefix(overrides["redis_url"], prefix)


def human(content: str) -> dict[str, Any]:
    return {"messages": [{"type": "human", "content": content}]}


async def new_thread(core: Core, owner: str = ALICE) -> str:
    session = await core.transcript.create_session(owner)
    return session.id


async def events_of(core: Core, thread_id: str, run_id: str, **kw: Any) -> list[Any]:
    return [e async for e in core.runs.stream(ALICE, thread_id, run_id, **kw)]


async def test_wait_returns_final_values_and_the_log_holds_every_event(
    core: Core, upstream: FakeUpstream
) -> None:
    upstream.always(MODEL, text("The answer is 42."))
    thread = await new_thread(core)
    run = await core.runs.create(
        ALICE, thread, RunRequest(assistant_id="agent", input=human("hi"), stream_modes=("values",))
    )
    result = await core.runs.wait(ALICE, thread, run.run_id)
    assert result["messages"][-1]["content"] == "The answer is 42."
    assert (await core.runs.get(ALICE, thread, run.run_id)).status == "success"
    events = await events_of(core, thread, run.run_id)
    names = [e.event for e in events]
    assert names[0] == "metadata" and events[0].data == {"run_id": run.run_id, "attempt": 1}
    assert names[-1] == "end" and set(names[1:-1]) == {"values"}
    ids = [tuple(map(int, e.id.split("-"))) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_replay_after_an_id_gives_exactly_the_rest(
    core: Core, upstream: FakeUpstream
) -> None:
    upstream.always(MODEL, text("one two three four five six", tokens_per_second=200))
    thread = await new_thread(core)
    run = await core.runs.create(
        ALICE,
        thread,
        RunRequest(assistant_id="agent", input=human("go"), stream_modes=("messages", "updates")),
    )
    everything = await events_of(core, thread, run.run_id)
    assert any(e.event == "messages" for e in everything)
    cut = len(everything) // 2
    rest = await events_of(core, thread, run.run_id, after=everything[cut - 1].id)
    assert [e.id for e in rest] == [e.id for e in everything[cut:]]
    again = await events_of(core, thread, run.run_id, after="-1")
    assert [e.id for e in again] == [e.id for e in everything]


async def test_reject_refuses_while_running_and_enqueue_runs_in_order(
    core: Core, upstream: FakeUpstream
) -> None:
    upstream.always(MODEL, text("slow answer", first_token_latency=0.6))
    thread = await new_thread(core)
    first = await core.runs.create(
        ALICE, thread, RunRequest(assistant_id="agent", input=human("1"))
    )
    with pytest.raises(ThreadBusy):
        await core.runs.create(
            ALICE, thread, RunRequest("agent", input=human("x"), multitask_strategy="reject")
        )
    second = await core.runs.create(ALICE, thread, RunRequest("agent", input=human("2")))
    third = await core.runs.create(ALICE, thread, RunRequest("agent", input=human("3")))
    assert second.status == third.status == "pending"
    assert await core.runs.store.pending(thread) == [second.run_id, third.run_id]
    final = await core.runs.wait(ALICE, thread, third.run_id)
    humans = [m["content"] for m in final["messages"] if m["type"] == "human"]
    assert humans == ["1", "2", "3"]
    for run in (first, second, third):
        assert (await core.runs.get(ALICE, thread, run.run_id)).status == "success"
    row = await core.transcript.get_session(thread, ALICE)
    assert row.metadata == {"graph_id": "agent", "assistant_id": "agent"}
    assert row.status == "idle"


async def test_interrupt_cancels_the_running_run_and_starts_the_new_one(
    core: Core, upstream: FakeUpstream
) -> None:
    upstream.script(MODEL, text("never seen", first_token_latency=5))
    upstream.always(MODEL, text("fresh answer"))
    thread = await new_thread(core)
    first = await core.runs.create(ALICE, thread, RunRequest("agent", input=human("old")))
    await asyncio.sleep(0.3)
    second = await core.runs.create(
        ALICE, thread, RunRequest("agent", input=human("new"), multitask_strategy="interrupt")
    )
    final = await core.runs.wait(ALICE, thread, second.run_id)
    assert final["messages"][-1]["content"] == "fresh answer"
    assert (await core.runs.get(ALICE, thread, first.run_id)).status == "interrupted"


async def test_rollback_leaves_no_trace_of_the_cancelled_run(
    core: Core, upstream: FakeUpstream
) -> None:
    upstream.script(MODEL, text("kept"), text("never seen", first_token_latency=5))
    upstream.always(MODEL, text("after rollback"))
    thread = await new_thread(core)
    kept = await core.runs.create(ALICE, thread, RunRequest("agent", input=human("keep me")))
    await core.runs.wait(ALICE, thread, kept.run_id)
    doomed = await core.runs.create(ALICE, thread, RunRequest("agent", input=human("doomed")))
    await asyncio.sleep(0.3)
    fresh = await core.runs.create(
        ALICE, thread, RunRequest("agent", input=human("fresh"), multitask_strategy="rollback")
    )
    final = await core.runs.wait(ALICE, thread, fresh.run_id)
    humans = [m["content"] for m in final["messages"] if m["type"] == "human"]
    assert humans == ["keep me", "fresh"]
    with pytest.raises(RunNotFound):
        await core.runs.get(ALICE, thread, doomed.run_id)


async def test_cancel_a_waiting_run_and_a_running_one(core: Core, upstream: FakeUpstream) -> None:
    upstream.always(MODEL, text("slow", first_token_latency=1.0))
    thread = await new_thread(core)
    running = await core.runs.create(ALICE, thread, RunRequest("agent", input=human("a")))
    waiting = await core.runs.create(ALICE, thread, RunRequest("agent", input=human("b")))
    cancelled = await core.runs.cancel(ALICE, thread, waiting.run_id)
    assert cancelled is not None and cancelled.status == "interrupted"
    stopped = await core.runs.cancel(ALICE, thread, running.run_id, wait=True)
    assert stopped is not None and stopped.status == "interrupted"
    assert await core.runs.store.active(thread) is None
    names = [e.event for e in await events_of(core, thread, waiting.run_id)]
    assert names == ["end"]


async def test_ownership_stateless_and_bad_requests(core: Core, upstream: FakeUpstream) -> None:
    upstream.always(MODEL, text("stateless answer"))
    thread = await new_thread(core)
    with pytest.raises(ThreadNotFound):
        await core.runs.create(BOB, thread, RunRequest("agent", input=human("mine?")))
    run = await core.runs.create(ALICE, thread, RunRequest("agent", input=human("hi")))
    with pytest.raises(RunNotFound):
        await core.runs.get(BOB, thread, run.run_id)
    with pytest.raises(BadRunRequest):
        await core.runs.create(ALICE, None, RunRequest("agent", command={"resume": "yes"}))
    with pytest.raises(BadRunRequest):
        await core.runs.create(ALICE, thread, RunRequest("agent", stream_modes=("bogus",)))
    created = await core.runs.create(
        ALICE, "11111111-2222-4333-8444-555555555555", RunRequest("agent", if_not_exists="create")
    )
    assert await core.transcript.get_session(created.thread_id, ALICE) is not None
    stateless = await core.runs.create(ALICE, None, RunRequest("agent", input=human("hi")))
    result = await core.runs.wait(ALICE, stateless.thread_id, stateless.run_id)
    assert result["messages"][-1]["content"] == "stateless answer"
    for _ in range(50):
        if await core.transcript.get_session(stateless.thread_id, ALICE) is None:
            break
        await asyncio.sleep(0.05)
    assert await core.transcript.get_session(stateless.thread_id, ALICE) is None


async def test_a_run_on_one_replica_is_joined_and_cancelled_from_another(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    upstream.reset()
    upstream.always(MODEL, text("slow words here", first_token_latency=0.3, tokens_per_second=5))
    async with two_replicas(tmp_path, upstream, "runs-replicas") as (a, b):
        thread = await new_thread(a)
        run = await a.runs.create(
            ALICE, thread, RunRequest("agent", input=human("go"), stream_modes=("messages",))
        )
        seen: list[str] = []
        async for event in b.runs.stream(ALICE, thread, run.run_id):
            seen.append(event.event)
            if event.event == "messages":
                break
        assert seen[0] == "metadata" and seen[-1] == "messages"
        stopped = await b.runs.cancel(ALICE, thread, run.run_id, wait=True)
        assert stopped is not None and stopped.status == "interrupted"
        assert await a.runs.store.active(thread) is None


async def test_runs_reserve_the_daily_budget_before_any_model_call(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    upstream.reset()
    upstream.always(MODEL, text("short", first_token_latency=0.5))
    settings = core_settings(tmp_path, upstream, daily_token_budget=300)
    async with open_core(settings) as core:
        thread = await new_thread(core)
        small = RunRequest("agent", input=human("hi"), context={"max_tokens": 200})
        first = await core.runs.create(ALICE, thread, small)
        # The first run's reservation (prompt + 200) leaves too little for a second.
        with pytest.raises(BudgetExceeded):
            await core.runs.create(ALICE, await new_thread(core), small)
        assert len(upstream.requests) <= 1
        await core.runs.wait(ALICE, thread, first.run_id)
        # Settled with the real usage (a few dozen tokens): room again.
        again = await core.runs.create(ALICE, await new_thread(core), small)
        await core.runs.wait(ALICE, again.thread_id, again.run_id)
        assert len(upstream.requests) == 2


async def test_a_wait_on_the_executing_replica_answers_as_one_on_another(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """Replica a executes; its own wait answers from memory, b's reads the log and the
    store: the same values, the same `__error__`, and a stranger still gets a 404."""
    upstream.reset()
    async with two_replicas(tmp_path, upstream, "runs-wait") as (a, b):
        upstream.always(MODEL, text("both see this", first_token_latency=0.3))
        thread = await new_thread(a)
        run = await a.runs.create(ALICE, thread, RunRequest("agent", input=human("go")))
        with pytest.raises(RunNotFound):
            await a.runs.wait(BOB, thread, run.run_id)
        here, there = await asyncio.gather(
            a.runs.wait(ALICE, thread, run.run_id), b.runs.wait(ALICE, thread, run.run_id)
        )
        assert here == there and here["messages"][-1]["content"] == "both see this"

        upstream.always(MODEL, fail("server_error", status=500))
        failing = await a.runs.create(ALICE, thread, RunRequest("agent", input=human("no")))
        here, there = await asyncio.gather(
            a.runs.wait(ALICE, thread, failing.run_id),
            b.runs.wait(ALICE, thread, failing.run_id),
        )
        assert here == there and set(here) == {"__error__"}
        assert (
            here["__error__"]["error"]
            == (await b.runs.get(ALICE, thread, failing.run_id)).error["error"]
        )
