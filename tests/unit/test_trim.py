"""Context selection: the window, the pinned current turn, and tool-call pairing."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from agent_server.graph.trim import repair, select_context, stale_messages


def human(text: str) -> HumanMessage:
    return HumanMessage(content=text, id=f"h-{text}")


def ai(text: str) -> AIMessage:
    return AIMessage(content=text, id=f"a-{text}")


def ai_calls(*call_ids: str, text: str = "") -> AIMessage:
    calls = [{"name": "calculator", "args": {"expression": "1+1"}, "id": c} for c in call_ids]
    return AIMessage(content=text, tool_calls=calls, id="a-calls-" + "-".join(call_ids))


def result(call_id: str) -> ToolMessage:
    return ToolMessage(content="2", tool_call_id=call_id, name="calculator", id=f"t-{call_id}")


def ids(messages: Sequence[BaseMessage]) -> list[str | None]:
    return [m.id for m in messages]


def assert_well_formed(messages: Sequence[BaseMessage]) -> None:
    """No ToolMessage without an earlier call, no call without all of its results."""
    requested: set[str] = set()
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            for call in m.tool_calls:
                assert call["id"] in answered, f"call {call['id']} has no result"
                requested.add(call["id"])
        if isinstance(m, ToolMessage):
            assert m.tool_call_id in requested, f"orphan result {m.tool_call_id}"
    assert not (messages and isinstance(messages[0], ToolMessage))


def conversation(turns: int) -> list[BaseMessage]:
    """`turns` turns, each: human, AI asking for a tool, its result, AI answer."""
    messages: list[BaseMessage] = []
    for i in range(turns):
        messages += [human(f"q{i}"), ai_calls(f"c{i}"), result(f"c{i}"), ai(f"answer{i}")]
    return messages


# --- select_context ----------------------------------------------------------------------


def test_short_history_is_returned_unchanged() -> None:
    messages = [human("q0"), ai("a0"), human("q1")]
    assert ids(select_context(messages, 20)) == ids(messages)


def test_window_limits_history_and_keeps_the_newest() -> None:
    messages: list[BaseMessage] = []
    for i in range(10):
        messages += [human(f"q{i}"), ai(f"a{i}")]
    messages.append(human("now"))
    selected = select_context(messages, 5)
    assert len(selected) == 5
    assert ids(selected) == ids(messages[-5:])


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5, 6, 7, 9, 13])
def test_window_is_respected_and_context_is_well_formed(window: int) -> None:
    messages = [*conversation(5), human("now")]
    selected = select_context(messages, window)
    assert 1 <= len(selected) <= window
    assert selected[-1].id == "h-now"
    assert_well_formed(selected)
    # Ordering preserved: the selection is a subsequence of the input, in order.
    positions = [ids(messages).index(m.id) for m in selected]
    assert positions == sorted(positions)


def test_current_turn_is_kept_whole_even_when_longer_than_the_window() -> None:
    current = [
        human("now"),
        ai_calls("x1", "x2"),
        result("x1"),
        result("x2"),
        ai_calls("x3"),
        result("x3"),
        ai("final"),
    ]
    messages = [*conversation(3), *current]
    selected = select_context(messages, 3)
    assert ids(selected) == ids(current)


def test_current_turn_exactly_the_window_leaves_no_history() -> None:
    current = [human("now"), ai_calls("x1"), result("x1")]
    selected = select_context([*conversation(2), *current], 3)
    assert ids(selected) == ids(current)


def test_never_starts_with_an_orphan_tool_message() -> None:
    # history: q0, calls(c0a, c0b), r(c0a), r(c0b), answer0 | now
    messages = [
        human("q0"),
        ai_calls("c0a", "c0b"),
        result("c0a"),
        result("c0b"),
        ai("answer0"),
        human("now"),
    ]
    # A window of 4 leaves 3 history slots: r(c0a), r(c0b), answer0 -> both results orphaned.
    assert ids(select_context(messages, 4)) == ["a-answer0", "h-now"]
    assert ids(select_context(messages, 3)) == ["a-answer0", "h-now"]
    # A window of 5 reaches the call, so the call and both results are kept together.
    assert ids(select_context(messages, 5)) == ids(messages[1:])
    for window in range(1, 8):
        assert_well_formed(select_context(messages, window))


def test_no_human_message_at_all() -> None:
    messages = [ai("a"), ai("b"), ai("c")]
    assert ids(select_context(messages, 2)) == ids(messages)


def test_empty_input() -> None:
    assert select_context([], 5) == []
    assert repair([]) == []


# --- repair ------------------------------------------------------------------------------


def test_repair_keeps_well_formed_history() -> None:
    messages = conversation(3)
    assert ids(repair(messages)) == ids(messages)


def test_cancelled_call_without_results_is_dropped() -> None:
    messages = [human("q0"), ai_calls("lost"), human("q1")]
    assert ids(repair(messages)) == ["h-q0", "h-q1"]


def test_cancelled_call_keeps_its_text_content() -> None:
    messages = [human("q0"), ai_calls("lost", text="Let me check."), human("q1")]
    repaired = repair(messages)
    assert ids(repaired) == ["h-q0", "a-calls-lost", "h-q1"]
    kept = repaired[1]
    assert isinstance(kept, AIMessage)
    assert kept.content == "Let me check."
    assert kept.tool_calls == []


def test_partially_answered_call_is_dropped_with_its_results() -> None:
    messages = [human("q0"), ai_calls("ok", "lost"), result("ok"), ai("a0"), human("q1")]
    repaired = repair(messages)
    assert ids(repaired) == ["h-q0", "a-a0", "h-q1"]
    assert_well_formed(repaired)


def test_orphan_tool_messages_are_dropped() -> None:
    messages = [result("ghost"), human("q0"), result("ghost2"), ai("a0")]
    assert ids(repair(messages)) == ["h-q0", "a-a0"]


def test_result_before_its_call_is_dropped() -> None:
    messages = [human("q0"), result("c"), ai_calls("c"), result("c")]
    # The first result comes before its call: an orphan. The second pairs with the call.
    repaired = repair(messages)
    assert [type(m).__name__ for m in repaired] == ["HumanMessage", "AIMessage", "ToolMessage"]
    assert_well_formed(repaired)


def test_repair_preserves_order_and_does_not_mutate_input() -> None:
    messages = [
        human("q0"),
        ai_calls("lost", text="thinking"),
        human("q1"),
        ai_calls("c1"),
        result("c1"),
        result("stray"),
        ai("a1"),
    ]
    before = [m.model_copy(deep=True) for m in messages]
    repaired = repair(messages)
    assert ids(repaired) == ["h-q0", "a-calls-lost", "h-q1", "a-calls-c1", "t-c1", "a-a1"]
    assert messages == before


def test_select_context_repairs_the_current_turn_too() -> None:
    """A run cancelled between model and tools leaves an unanswered call in the thread;
    the next turn's context must not contain it (OpenAI-compatible APIs reject it)."""
    messages = [human("q0"), ai_calls("lost"), human("q1")]
    selected = select_context(messages, 10)
    assert ids(selected) == ["h-q0", "h-q1"]
    assert_well_formed(selected)


# --- stale_messages: what the hot state may forget ------------------------------------


def shaped(turn_shapes: Sequence[int]) -> list[BaseMessage]:
    """Turns of a conversation: shape 0 is question → answer; n > 0 is question → a
    call asking for n tools → n results → answer."""
    messages: list[BaseMessage] = []
    for t, n in enumerate(turn_shapes):
        messages.append(human(f"q{t}"))
        if n:
            calls = [f"c{t}-{k}" for k in range(n)]
            messages.append(ai_calls(*calls))
            messages.extend(result(c) for c in calls)
        messages.append(ai(f"answer{t}"))
    return messages


def test_nothing_is_stale_up_to_twice_the_window() -> None:
    messages = shaped([1, 0, 2])  # 4 + 2 + 5 = 11 messages
    assert stale_messages(messages, window=6) == []


def test_whole_old_turns_go_and_at_least_the_window_stays() -> None:
    messages = shaped([1, 0, 2, 0, 1])  # 4, 2, 5, 2, 4 = 17 messages
    stale = stale_messages(messages, window=6)
    kept = messages[len(stale) :]
    assert ids(stale) == ids(messages[:11])  # the first three turns
    assert isinstance(kept[0], HumanMessage) and len(kept) >= 6


@pytest.mark.parametrize("window", [1, 2, 3, 5, 8, 20])
@pytest.mark.parametrize("seed", range(12))
def test_forgetting_stale_turns_never_changes_what_the_model_sees(window: int, seed: int) -> None:
    import random

    rng = random.Random(seed)
    shapes = [rng.choice([0, 0, 1, 2, 3]) for _ in range(rng.randint(1, 25))]
    messages = shaped(shapes)
    stale = stale_messages(messages, window)
    assert messages[: len(stale)] == stale  # a prefix: only the oldest messages go
    kept = messages[len(stale) :]
    assert not stale or isinstance(kept[0], HumanMessage)
    nxt = [human("next")]
    assert ids(select_context(kept + nxt, window)) == ids(select_context(messages + nxt, window))
