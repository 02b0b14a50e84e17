"""`unstored_messages`: which messages of a thread belong to no stored turn."""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from agent_server.graph.state import TURN_ID_MAX, retake_turn_id, turn_message_id
from agent_server.graph.unstored import unstored_messages


def _turn(turn_id: str, *, tool: bool = False) -> list[BaseMessage]:
    messages: list[BaseMessage] = [HumanMessage(content=f"q {turn_id}", id=turn_id)]
    if tool:
        messages.append(
            AIMessage(
                content="",
                id=f"{turn_id}-call",
                tool_calls=[{"name": "calculator", "args": {}, "id": f"c-{turn_id}"}],
            )
        )
        messages.append(ToolMessage(content="2", tool_call_id=f"c-{turn_id}", id=f"{turn_id}-res"))
    messages.append(AIMessage(content=f"a {turn_id}", id=f"{turn_id}-answer"))
    return messages


def _ids(messages: list[BaseMessage]) -> list[str | None]:
    return [m.id for m in messages]


def test_nothing_is_dropped_when_every_earlier_turn_was_stored() -> None:
    state = [*_turn("t1"), *_turn("t2", tool=True), HumanMessage(content="new", id="t3")]
    assert unstored_messages(state, {"turn_id": "t2"}) == []


def test_turns_after_the_last_stored_one_are_dropped() -> None:
    ghost1, ghost2 = _turn("g1", tool=True), _turn("g2")
    state = [*_turn("t1"), *ghost1, *ghost2, HumanMessage(content="new", id="t2")]
    assert _ids(unstored_messages(state, {"turn_id": "t1"})) == _ids([*ghost1, *ghost2])


def test_a_failed_attempt_of_the_same_turn_id_leaves_a_tail_that_is_dropped() -> None:
    # The retry's human message replaced the failed attempt's in place (same id).
    state = [*_turn("t1"), *_turn("t2")]
    assert _ids(unstored_messages(state, {"turn_id": "t1"})) == ["t2-answer"]


def test_without_a_stored_turn_only_a_known_empty_transcript_drops_the_past() -> None:
    ghost = _turn("g1")
    restored = [
        HumanMessage(content="old", id="p1:user"),
        AIMessage(content="old answer", id="p1:ai"),
    ]
    state = [*restored, *ghost, HumanMessage(content="new", id="t1")]
    assert _ids(unstored_messages(state, None, nothing_stored=True)) == _ids(ghost)
    # A state someone else made (messages given through the LangGraph API): kept.
    assert unstored_messages(state, None) == []


def test_a_stored_turn_missing_from_the_state_keeps_everything_but_the_tail() -> None:
    state = [*_turn("x"), HumanMessage(content="new", id="t9")]
    assert unstored_messages(state, {"turn_id": "gone"}) == []
    assert unstored_messages([], {"turn_id": "t1"}) == []


def test_a_retake_turn_is_matched_to_the_message_it_answered() -> None:
    """A regenerated answer is stored as `<message id>:retake:<run>`; the messages after
    it are still judged from it, as after any stored turn."""
    stored = retake_turn_id("h1", "3cf9a9a3-75a4-45e6-ad47-263cdf4b298a")
    assert stored == "h1:retake:3cf9a9a3"
    assert turn_message_id(stored) == "h1"
    ghost = AIMessage("a failed turn's reply", id="a2")
    messages = [
        HumanMessage("one", id="h1"),
        AIMessage("answer", id="a1"),
        HumanMessage("lost", id="h2"),
        ghost,
        HumanMessage("now", id="h3"),
    ]
    assert [m.id for m in unstored_messages(messages, {"turn_id": stored})] == ["h2", "a2"]


def test_a_retake_of_a_long_message_id_still_fits_the_column() -> None:
    run_id = "3cf9a9a3-75a4-45e6-ad47-263cdf4b298a"
    assert retake_turn_id("m" * 49, run_id) == run_id  # 49 + 8 + 8 > 64
    fitting = retake_turn_id("m" * 48, run_id)
    assert len(fitting) == TURN_ID_MAX and turn_message_id(fitting) == "m" * 48
