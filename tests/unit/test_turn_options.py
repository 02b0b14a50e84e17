"""`turn_options`: a turn keeps the options it started with, and only that turn."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage

from agent_server.graph.state import RunOptions, record_options, turn_options


def state_for(turn_id: str, stored: dict | None) -> dict:
    return {
        "messages": [HumanMessage(content="hi", id=turn_id), AIMessage(content="", id="a")],
        "turn_options": stored,
    }


def test_the_recorded_options_of_this_turn_win_over_the_context() -> None:
    first = RunOptions(tools=("weather",), temperature=0.2, require_approval=("units",))
    state = state_for("t1", record_options(first, "t1"))
    assert turn_options(state, RunOptions()) == first
    assert turn_options(state, None) == first


def test_a_record_of_another_turn_is_ignored() -> None:
    stale = record_options(RunOptions(tools=("weather",)), "t0")
    context = RunOptions(model="m2")
    assert turn_options(state_for("t1", stale), context) == context
    assert turn_options(state_for("t1", None), None) == RunOptions()


def test_the_record_survives_a_serialiser_that_makes_lists_of_tuples() -> None:
    options = RunOptions(tools=("a", "b"), sampling={"stop": ["x"]})
    record = record_options(options, "t1")
    assert record["options"]["tools"] == ["a", "b"]
    assert turn_options(state_for("t1", record), None) == options
