"""The agent graph with scripted models, real tools and a real SQLite transcript."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph

from agent_server.config import OFFLINE_MODEL_ID
from agent_server.errors import UpstreamAuthError, UpstreamUnavailable
from agent_server.graph import AgentDeps, RunOptions, build_graph, new_turn
from agent_server.graph.state import FLAGS_KEY, RunFlags
from agent_server.llm.fallback import ChainEntry, ModelChain
from agent_server.llm.offline import OfflineChatModel
from agent_server.llm.registry import KNOWN_MODELS, ModelSpec
from agent_server.persistence.db import create_engine
from agent_server.persistence.repository import TranscriptRepository, TurnRecord
from agent_server.tools.registry import ToolRegistry
from tests.conftest import make_settings
from tests.support.scripted_model import ScriptedChatModel, asks_for, tool_call

THREAD = "thread-1"
USAGE = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}

# --- tools -------------------------------------------------------------------------------


async def _slow_a() -> str:
    await asyncio.sleep(0.5)
    return "a done"


async def _slow_b() -> str:
    await asyncio.sleep(0.5)
    return "b done"


async def _sleepy() -> str:
    await asyncio.sleep(5)
    return "never"


async def _explode() -> str:
    raise RuntimeError("boom")


async def _double(n: int) -> int:
    return 2 * n


async def _echo(text: str = "") -> str:
    return f"echo:{text}"


def _tool(name: str, coroutine: Any) -> BaseTool:
    return StructuredTool.from_function(coroutine=coroutine, name=name, description=name)


ALL_TOOLS = [
    _tool("slow_a", _slow_a),
    _tool("slow_b", _slow_b),
    _tool("sleepy", _sleepy),
    _tool("explode", _explode),
    _tool("double", _double),
    _tool("echo", _echo),
]

# --- wiring ------------------------------------------------------------------------------


@pytest.fixture
async def transcript(tmp_path: Path) -> AsyncIterator[TranscriptRepository]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'transcript.db'}")
    repo = TranscriptRepository(engine)
    await repo.create_schema()
    yield repo
    await engine.dispose()


def offline_entry() -> ChainEntry:
    return ChainEntry(KNOWN_MODELS[OFFLINE_MODEL_ID], OfflineChatModel())


def chain(*models: tuple[str, ScriptedChatModel]) -> ModelChain:
    return ModelChain([ChainEntry(ModelSpec(mid), m) for mid, m in models], offline_entry())


def make_graph(
    tmp_path: Path,
    transcript: TranscriptRepository,
    models: ModelChain | ScriptedChatModel,
    *,
    tools: Sequence[BaseTool] = ALL_TOOLS,
    **settings: Any,
) -> CompiledStateGraph:
    if isinstance(models, ScriptedChatModel):
        models = chain(("scripted", models))
    deps = AgentDeps(
        make_settings(tmp_path, **settings),
        models=models,
        tools=ToolRegistry(tools),
        transcript=transcript,
    )
    return build_graph(deps, checkpointer=InMemorySaver())


async def run(
    graph: CompiledStateGraph,
    text: str = "hello",
    *,
    turn_id: str | None = None,
    thread: str = THREAD,
    options: RunOptions | None = None,
    flags: RunFlags | None = None,
) -> dict[str, Any]:
    return await graph.ainvoke(
        new_turn(text, turn_id or str(uuid.uuid4())),
        {"configurable": {"thread_id": thread, FLAGS_KEY: flags or RunFlags()}},
        context=options or RunOptions(),
    )


def tool_messages(state: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in state["messages"] if isinstance(m, ToolMessage)]


def assert_no_orphans(messages: Sequence[BaseMessage]) -> None:
    requested: set[str] = set()
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    for m in messages:
        if isinstance(m, AIMessage):
            for call in m.tool_calls:
                assert call["id"] in answered, f"unanswered call {call}"
                requested.add(call["id"])
        elif isinstance(m, ToolMessage):
            assert m.tool_call_id in requested, f"orphan tool result {m}"


# --- tools node --------------------------------------------------------------------------


async def test_tool_calls_of_one_turn_run_concurrently(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    model = ScriptedChatModel(
        script=[asks_for(tool_call("slow_a"), tool_call("slow_b")), "both done"]
    )
    graph = make_graph(tmp_path, transcript, model)
    started = time.perf_counter()
    state = await run(graph, "run both")
    elapsed = time.perf_counter() - started
    assert elapsed < 0.9, f"tools ran one after the other ({elapsed:.2f}s)"
    results = tool_messages(state)
    assert [(m.name, m.content, m.status) for m in results] == [
        ("slow_a", "a done", "success"),
        ("slow_b", "b done", "success"),
    ]
    assert state["last_turn"]["response"] == "both done"
    assert state["last_turn"]["tools_used"] == ["slow_a", "slow_b"]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (tool_call("no_such_tool"), "not available"),
        (tool_call("double", {"n": "not a number"}), "invalid arguments"),
        (tool_call("double", {}), "invalid arguments"),
        (tool_call("explode"), "boom"),
        (tool_call("sleepy"), "timed out"),
    ],
    ids=["unknown", "wrong-type", "missing-arg", "exception", "timeout"],
)
async def test_tool_failure_becomes_error_message_and_run_continues(
    tmp_path: Path, transcript: TranscriptRepository, call: dict[str, Any], expected: str
) -> None:
    model = ScriptedChatModel(script=[asks_for(call), "I explained the failure"])
    graph = make_graph(tmp_path, transcript, model, tool_timeout_seconds=0.2)
    started = time.perf_counter()
    state = await run(graph, "try it")
    assert time.perf_counter() - started < 3, "the timeout did not cut the slow tool off"
    [result] = tool_messages(state)
    assert result.status == "error"
    assert expected in str(result.content)
    assert result.content.startswith("Error:")
    # The model saw the error and answered; the turn was persisted.
    assert isinstance(model.calls[1].messages[-1], ToolMessage)
    assert model.calls[1].messages[-1].status == "error"
    assert state["last_turn"]["response"] == "I explained the failure"
    [turn] = await transcript.list_turns(THREAD, limit=10)
    assert turn.assistant_message == "I explained the failure"


async def test_all_failure_modes_in_one_round_leave_good_calls_alone(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    calls = [
        tool_call("no_such_tool"),
        tool_call("double", {"n": "x"}),
        tool_call("explode"),
        tool_call("sleepy"),
        tool_call("double", {"n": 21}),
    ]
    model = ScriptedChatModel(script=[asks_for(*calls), "done"])
    graph = make_graph(tmp_path, transcript, model, tool_timeout_seconds=0.2)
    state = await run(graph)
    results = tool_messages(state)
    assert [m.status for m in results] == ["error", "error", "error", "error", "success"]
    assert results[-1].content == "42"
    # Every call id got exactly one result, in call order.
    ai_call = next(m for m in state["messages"] if isinstance(m, AIMessage) and m.tool_calls)
    assert [m.tool_call_id for m in results] == [c["id"] for c in ai_call.tool_calls]
    assert state["last_turn"]["response"] == "done"


async def test_typed_argument_is_validated_and_coerced(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    model = ScriptedChatModel(script=[asks_for(tool_call("double", {"n": "7"})), "ok"])
    state = await run(make_graph(tmp_path, transcript, model))
    [result] = tool_messages(state)
    assert (result.status, result.content) == ("success", "14")


async def test_tool_outside_run_options_is_refused(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    model = ScriptedChatModel(script=[asks_for(tool_call("echo", {"text": "hi"})), "refused"])
    graph = make_graph(tmp_path, transcript, model)
    state = await run(graph, options=RunOptions(tools=("double",)))
    assert model.calls[0].tools == ["double"]
    [result] = tool_messages(state)
    assert result.status == "error"
    assert "not available" in result.content
    assert "echo:" not in result.content
    assert state["last_turn"]["response"] == "refused"


async def test_unknown_or_refused_tools_are_not_reported_as_used(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    """`tools_used` is what the response and history report as used; a name the model
    invented, or a tool this run was not allowed to call, never ran."""
    model = ScriptedChatModel(
        script=[asks_for(tool_call("rm_rf"), tool_call("echo"), tool_call("double", {"n": 1})), "x"]
    )
    graph = make_graph(tmp_path, transcript, model)
    state = await run(graph, options=RunOptions(tools=("double",)))
    assert state["last_turn"]["tools_used"] == ["double"]


async def test_use_tools_false_binds_no_tools_and_refuses_calls(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    model = ScriptedChatModel(script=[asks_for(tool_call("echo")), "no tools"])
    graph = make_graph(tmp_path, transcript, model)
    state = await run(graph, options=RunOptions(use_tools=False))
    assert [c.tools for c in model.calls] == [None, None]
    [result] = tool_messages(state)
    assert result.status == "error"
    assert "echo:" not in result.content


async def test_all_tools_are_bound_by_default(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    model = ScriptedChatModel(script=["hi"])
    await run(make_graph(tmp_path, transcript, model))
    assert model.calls[0].tools == [t.name for t in ALL_TOOLS]
    assert model.calls[0].kwargs == {"temperature": 0.7, "max_tokens": 1000}


# --- step limit --------------------------------------------------------------------------


@pytest.mark.parametrize("rounds", [1, 3, 10, 50])
async def test_step_limit_ends_a_tool_loop_with_a_clear_persisted_answer(
    tmp_path: Path, transcript: TranscriptRepository, rounds: int
) -> None:
    model = ScriptedChatModel(script=[asks_for(tool_call("echo"))], repeat_last=True)
    graph = make_graph(tmp_path, transcript, model, max_tool_rounds=rounds)
    state = await run(graph, "loop forever")
    answer = state["last_turn"]["response"]
    assert answer.startswith(f"I stopped after {rounds} rounds")
    assert len(model.calls) == rounds
    assert len(tool_messages(state)) == rounds
    assert state["last_turn"]["tools_used"] == ["echo"]
    [turn] = await transcript.list_turns(THREAD, limit=10)
    assert turn.assistant_message == answer
    # The thread is still usable: the next turn starts with a fresh round counter.
    model.script[:] = ["fresh"]
    model.repeat_last = False
    model.calls.clear()
    state = await run(graph, "now answer")
    assert state["last_turn"]["response"] == "fresh"
    assert len(await transcript.list_turns(THREAD, limit=10)) == 2


# --- persistence -------------------------------------------------------------------------


async def test_record_turn_is_idempotent(transcript: TranscriptRepository) -> None:
    record = TurnRecord(turn_id="turn-1", session_id="s-1", user_message="q", assistant_message="a")
    assert await transcript.record_turn(record, owner="alice") is True
    changed = TurnRecord(
        turn_id="turn-1", session_id="s-1", user_message="q", assistant_message="other"
    )
    assert await transcript.record_turn(changed, owner="alice") is False
    turns = await transcript.list_turns("s-1", limit=10)
    assert [(t.turn_id, t.assistant_message) for t in turns] == [("turn-1", "a")]
    session = await transcript.get_session("s-1", "alice")
    assert session is not None and session.title == "q"


async def test_rerunning_a_turn_does_not_duplicate_its_row(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    model = ScriptedChatModel(script=["first", "retried", "next"])
    graph = make_graph(tmp_path, transcript, model)
    await run(graph, "question", turn_id="turn-A")
    retried = await run(graph, "question", turn_id="turn-A")
    assert retried["last_turn"]["turn_id"] == "turn-A"
    turns = await transcript.list_turns(THREAD, limit=10)
    assert [(t.turn_id, t.assistant_message) for t in turns] == [("turn-A", "first")]
    # The retried HumanMessage replaced the first (same id) rather than adding one.
    humans = [m for m in retried["messages"] if isinstance(m, HumanMessage)]
    assert len(humans) == 1
    await run(graph, "another", turn_id="turn-B")
    turns = await transcript.list_turns(THREAD, limit=10)
    assert [t.turn_id for t in turns] == ["turn-A", "turn-B"]


async def test_persisted_turn_carries_the_accounting(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    model = ScriptedChatModel(
        script=[
            AIMessage(content="", tool_calls=[tool_call("echo")], usage_metadata=USAGE),
            AIMessage(content="done", usage_metadata=USAGE),
        ]
    )
    graph = make_graph(tmp_path, transcript, model)
    state = await run(graph, "use echo", turn_id="turn-X", flags=RunFlags(principal="bob"))
    [turn] = await transcript.list_turns(THREAD, limit=10)
    assert turn.turn_id == "turn-X"
    assert turn.user_message == "use echo"
    assert turn.assistant_message == "done"
    assert turn.tools_used == ["echo"]
    assert turn.model_used == "scripted"
    assert (turn.input_tokens, turn.output_tokens) == (20, 10)
    assert turn.latency_ms == state["last_turn"]["latency_ms"] >= 0
    assert await transcript.get_session(THREAD, "bob") is not None
    assert await transcript.get_session(THREAD, "alice") is None


# --- per-turn accumulators ---------------------------------------------------------------


@pytest.mark.parametrize("studio_input", [False, True], ids=["new_turn", "messages-only"])
async def test_accumulators_reset_per_turn(
    tmp_path: Path, transcript: TranscriptRepository, studio_input: bool
) -> None:
    second_usage = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    model = ScriptedChatModel(
        script=[
            AIMessage(content="", tool_calls=[tool_call("echo")], usage_metadata=USAGE),
            AIMessage(content="turn one", usage_metadata=USAGE),
            AIMessage(content="turn two", usage_metadata=second_usage),
        ]
    )
    graph = make_graph(tmp_path, transcript, model)
    first = await run(graph, "one")
    assert first["last_turn"]["tools_used"] == ["echo"]
    assert first["last_turn"]["usage"] == {
        "input_tokens": 20,
        "output_tokens": 10,
        "total_tokens": 30,
    }
    config = {"configurable": {"thread_id": THREAD}}
    if studio_input:
        second = await graph.ainvoke(
            {"messages": [HumanMessage(content="two")]}, config, context=RunOptions()
        )
    else:
        second = await run(graph, "two")
    summary = second["last_turn"]
    assert summary["response"] == "turn two"
    assert summary["tools_used"] == []
    assert summary["usage"] == second_usage
    assert summary["fallbacks"] == []
    assert second["tool_rounds"] == 0
    turns = await transcript.list_turns(THREAD, limit=10)
    assert [(t.tools_used, t.input_tokens) for t in turns] == [(["echo"], 20), ([], 7)]


# --- context window ----------------------------------------------------------------------


def _tool_then_answer(messages: list[BaseMessage]) -> AIMessage:
    """Ask for two tools right after the user spoke, answer once results are in."""
    if isinstance(messages[-1], HumanMessage):
        return asks_for(tool_call("echo", {"text": "x"}), tool_call("double", {"n": 2}))
    return AIMessage(content=f"answer after {len(messages)} messages")


async def test_history_window_trims_what_the_model_receives(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    window = 4
    model = ScriptedChatModel(script=[_tool_then_answer], repeat_last=True)
    graph = make_graph(tmp_path, transcript, model, history_window=window)
    for i in range(5):
        state = await run(graph, f"question {i}")
    # Human, call, 2 results, answer per turn; past 2 x window messages the persist node
    # drops whole old turns from the hot state, while SQL keeps every turn.
    assert len(state["messages"]) == 5
    assert len(await transcript.list_turns(THREAD, limit=10)) == 5
    assert len(model.calls) == 10
    for call in model.calls:
        received = call.messages
        assert isinstance(received[0], SystemMessage)
        body = received[1:]
        last_human = max(i for i, m in enumerate(body) if isinstance(m, HumanMessage))
        current = body[last_human:]
        assert len(body) <= max(window, len(current))
        assert not isinstance(body[0], ToolMessage)
        assert_no_orphans(body)
    # The last call saw the whole current turn (4 messages) and nothing of earlier turns
    # except what fits.
    last = model.calls[-1].messages[1:]
    assert [type(m).__name__ for m in last] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "ToolMessage",
    ]
    assert last[0].content == "question 4"
    # The first model call of the last turn: 3 history slots would start at the previous
    # turn's two tool results, which lost their call; only the previous answer remains.
    first_of_last_turn = model.calls[-2].messages[1:]
    assert [type(m).__name__ for m in first_of_last_turn] == ["AIMessage", "HumanMessage"]
    assert first_of_last_turn[0].content.startswith("answer after")
    assert first_of_last_turn[-1].content == "question 4"


# --- context restored from SQL ----------------------------------------------------------


async def _past_turns(transcript: TranscriptRepository, thread: str, n: int) -> None:
    for i in range(n):
        await transcript.record_turn(
            TurnRecord(f"past-{i}", thread, f"earlier question {i}", f"earlier answer {i}"),
            owner="local",
        )


def _texts(messages: Sequence[BaseMessage]) -> list[str]:
    return [str(m.content) for m in messages if not isinstance(m, SystemMessage)]


async def test_a_thread_without_hot_state_gets_its_past_from_sql(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    """The checkpoint is gone (expired, store lost) but SQL has the turns: the model
    node puts them back before the current message, in the state too."""
    await _past_turns(transcript, "expired", 2)
    model = ScriptedChatModel(script=["restored", "and again"])
    graph = make_graph(tmp_path, transcript, model)
    state = await run(graph, "what did I ask?", thread="expired")
    expected = [
        "earlier question 0",
        "earlier answer 0",
        "earlier question 1",
        "earlier answer 1",
        "what did I ask?",
    ]
    assert _texts(model.calls[0].messages) == expected
    assert _texts(state["messages"]) == [*expected, "restored"]
    # The next turn finds the past in the hot state and does not restore it twice.
    state = await run(graph, "more", thread="expired")
    assert _texts(model.calls[1].messages) == [*expected, "restored", "more"]
    assert _texts(state["messages"]) == [*expected, "restored", "more", "and again"]


async def test_a_session_the_api_just_created_skips_the_sql_lookup(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    await _past_turns(transcript, "fresh", 1)  # would be restored if looked up
    model = ScriptedChatModel(script=["hi"])
    graph = make_graph(tmp_path, transcript, model)
    await run(graph, "hello", thread="fresh", flags=RunFlags(no_past=True))
    assert _texts(model.calls[0].messages) == ["hello"]


# --- fallback chain ----------------------------------------------------------------------


def _request() -> httpx.Request:
    return httpx.Request("POST", "http://x")


def connection_error() -> openai.APIConnectionError:
    return openai.APIConnectionError(request=_request())


def rate_limit_error() -> openai.RateLimitError:
    return openai.RateLimitError(
        "slow down", response=httpx.Response(429, request=_request()), body=None
    )


def auth_error() -> openai.AuthenticationError:
    return openai.AuthenticationError(
        "bad key", response=httpx.Response(401, request=_request()), body=None
    )


def server_error() -> openai.InternalServerError:
    return openai.InternalServerError(
        "oops", response=httpx.Response(500, request=_request()), body=None
    )


async def test_connection_error_falls_back_to_the_next_model(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    first = ScriptedChatModel(script=[connection_error()])
    second = ScriptedChatModel(script=["from the second model"])
    graph = make_graph(tmp_path, transcript, chain(("model-a", first), ("model-b", second)))
    state = await run(graph)
    summary = state["last_turn"]
    assert summary["response"] == "from the second model"
    assert summary["model_used"] == "model-b"
    assert summary["fallbacks"] == [{"model": "model-a", "reason": "connection"}]
    assert summary["degraded"] is False
    assert len(first.calls) == len(second.calls) == 1
    [turn] = await transcript.list_turns(THREAD, limit=10)
    assert turn.fallbacks == [{"model": "model-a", "reason": "connection"}]
    assert turn.model_used == "model-b"


async def test_fallback_is_recorded_per_model_call_across_a_tool_round(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    first = ScriptedChatModel(script=[server_error(), connection_error()])
    second = ScriptedChatModel(script=[asks_for(tool_call("echo")), "done"])
    graph = make_graph(tmp_path, transcript, chain(("model-a", first), ("model-b", second)))
    state = await run(graph)
    assert state["last_turn"]["fallbacks"] == [
        {"model": "model-a", "reason": "server_error"},
        {"model": "model-a", "reason": "connection"},
    ]
    assert state["last_turn"]["response"] == "done"


async def test_preferred_model_is_tried_first(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    first = ScriptedChatModel(script=[])
    second = ScriptedChatModel(script=["preferred answered"])
    graph = make_graph(tmp_path, transcript, chain(("model-a", first), ("model-b", second)))
    state = await run(graph, options=RunOptions(model="model-b"))
    assert state["last_turn"]["model_used"] == "model-b"
    assert first.calls == []


async def test_all_rate_limited_answers_offline_and_degraded(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    first = ScriptedChatModel(script=[rate_limit_error()])
    second = ScriptedChatModel(script=[rate_limit_error()])
    graph = make_graph(tmp_path, transcript, chain(("model-a", first), ("model-b", second)))
    state = await run(graph, "hello there")
    summary = state["last_turn"]
    assert summary["degraded"] is True
    assert summary["model_used"] == OFFLINE_MODEL_ID
    assert summary["fallbacks"] == [
        {"model": "model-a", "reason": "rate_limit"},
        {"model": "model-b", "reason": "rate_limit"},
    ]
    assert "offline model" in summary["response"]
    [turn] = await transcript.list_turns(THREAD, limit=10)
    assert turn.degraded is True


async def test_auth_error_stops_at_once(tmp_path: Path, transcript: TranscriptRepository) -> None:
    first = ScriptedChatModel(script=[auth_error()])
    second = ScriptedChatModel(script=["must not be asked"])
    graph = make_graph(tmp_path, transcript, chain(("model-a", first), ("model-b", second)))
    with pytest.raises(UpstreamAuthError) as caught:
        await run(graph)
    assert caught.value.status_code == 502
    assert caught.value.details == {"model": "model-a"}
    assert second.calls == []
    assert await transcript.list_turns(THREAD, limit=10) == []


async def test_all_server_errors_raise_upstream_unavailable(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    first = ScriptedChatModel(script=[server_error()])
    second = ScriptedChatModel(script=[server_error()])
    graph = make_graph(tmp_path, transcript, chain(("model-a", first), ("model-b", second)))
    with pytest.raises(UpstreamUnavailable) as caught:
        await run(graph)
    assert caught.value.status_code == 503
    assert caught.value.details == {
        "models": [
            {"model": "model-a", "reason": "server_error"},
            {"model": "model-b", "reason": "server_error"},
        ]
    }
    assert await transcript.list_turns(THREAD, limit=10) == []


async def test_rate_limit_mixed_with_server_error_is_not_degraded(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    first = ScriptedChatModel(script=[rate_limit_error()])
    second = ScriptedChatModel(script=[server_error()])
    graph = make_graph(tmp_path, transcript, chain(("model-a", first), ("model-b", second)))
    with pytest.raises(UpstreamUnavailable):
        await run(graph)


async def test_model_without_tool_support_is_skipped_when_tools_are_bound(
    tmp_path: Path, transcript: TranscriptRepository
) -> None:
    first = ScriptedChatModel(script=["must not be asked"])
    second = ScriptedChatModel(script=["has tools"])
    models = ModelChain(
        [
            ChainEntry(ModelSpec("no-tools", supports_tools=False), first),
            ChainEntry(ModelSpec("model-b"), second),
        ],
        offline_entry(),
    )
    state = await run(make_graph(tmp_path, transcript, models))
    assert first.calls == []
    assert state["last_turn"]["fallbacks"] == [{"model": "no-tools", "reason": "no_tool_support"}]
    assert state["last_turn"]["model_used"] == "model-b"
