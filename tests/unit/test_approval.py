"""Approval policy and decisions, without a graph: which calls wait, what each decision does."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from agent_server.graph.approval import (
    InvalidDecisions,
    apply_decisions,
    approval_names,
    interrupt_value,
    needs_approval,
    parse_decisions,
    pending_from_interrupts,
)
from agent_server.graph.tool_calls import unanswered_calls
from agent_server.tools.registry import ToolRegistry


@tool
def weather(location: str) -> str:
    """Weather at a place."""
    return f"sunny in {location}"


@tool
def calculator(expression: str) -> str:
    """Evaluate arithmetic."""
    return expression


TOOLS = ToolRegistry([weather, calculator])
CALLS = [
    {"id": "c1", "name": "weather", "args": {"location": "Paris"}, "type": "tool_call"},
    {"id": "c2", "name": "calculator", "args": {"expression": "2+2"}, "type": "tool_call"},
]
MESSAGE = AIMessage(content="", tool_calls=CALLS, id="ai-1")


def test_policy_adds_request_tools_to_the_configured_ones_never_fewer() -> None:
    assert [c["id"] for c in needs_approval(["weather"], None, CALLS)] == ["c1"]
    assert [c["id"] for c in needs_approval(["weather"], ["calculator"], CALLS)] == ["c1", "c2"]
    assert needs_approval([], None, CALLS) == []


def test_interrupt_value_lists_the_pending_calls_and_can_be_read_back() -> None:
    value = interrupt_value(CALLS[:1])
    assert value == {
        "type": "tool_approval",
        "pending_tool_calls": [{"id": "c1", "name": "weather", "args": {"location": "Paris"}}],
    }
    assert pending_from_interrupts([{"other": 1}, value]) == value["pending_tool_calls"]
    assert pending_from_interrupts(["not a dict"]) == []


def pending() -> list[dict]:
    return interrupt_value(CALLS)["pending_tool_calls"]


@pytest.mark.parametrize(
    ("resume", "problem"),
    [
        ("yes", "must be"),
        ({"decisions": [{"tool_call_id": "c1", "action": "approve"}]}, "'c2' needs exactly one"),
        (
            {
                "decisions": [
                    {"tool_call_id": "c1", "action": "approve"},
                    {"tool_call_id": "c1", "action": "deny"},
                    {"tool_call_id": "c2", "action": "approve"},
                ]
            },
            "'c1' needs exactly one",
        ),
        (
            {
                "decisions": [
                    {"tool_call_id": "c1", "action": "launch"},
                    {"tool_call_id": "c2", "action": "approve"},
                ]
            },
            "decisions[0]",
        ),
        (
            {
                "decisions": [
                    {"tool_call_id": "c1", "action": "edit", "args": {"place": "Rome"}},
                    {"tool_call_id": "c2", "action": "approve"},
                ]
            },
            "c1: location",
        ),
        (
            {
                "decisions": [
                    {"tool_call_id": "c1", "action": "edit"},
                    {"tool_call_id": "c2", "action": "approve"},
                ]
            },
            "needs `args`",
        ),
        (
            {
                "decisions": [
                    {"tool_call_id": "zz", "action": "approve"},
                    {"tool_call_id": "c1", "action": "approve"},
                    {"tool_call_id": "c2", "action": "approve"},
                ]
            },
            "'zz' is not a pending",
        ),
    ],
)
def test_bad_decisions_are_refused_with_the_reason(resume: object, problem: str) -> None:
    with pytest.raises(InvalidDecisions) as caught:
        parse_decisions(resume, pending(), TOOLS)
    assert problem in str(caught.value)


def test_mixed_decisions_edit_approve_and_deny() -> None:
    decisions = parse_decisions(
        {
            "decisions": [
                {"tool_call_id": "c1", "action": "edit", "args": {"location": "Rome"}},
                {"tool_call_id": "c2", "action": "deny", "reason": "no maths today"},
            ]
        },
        pending(),
        TOOLS,
    )
    applied = apply_decisions(MESSAGE, decisions, decided_by="key:alice", decided_at="T")
    assert applied.message.id == "ai-1"
    assert [c["args"] for c in applied.message.tool_calls] == [
        {"location": "Rome"},
        {"expression": "2+2"},
    ]
    [denied] = applied.denied
    assert denied.tool_call_id == "c2" and denied.status == "error"
    assert "declined" in denied.content and "no maths today" in denied.content
    assert applied.record == [
        {
            "tool_call_id": "c1",
            "name": "weather",
            "action": "edit",
            "args": {"location": "Rome"},
            "decided_by": "key:alice",
            "decided_at": "T",
        },
        {
            "tool_call_id": "c2",
            "name": "calculator",
            "action": "deny",
            "reason": "no maths today",
            "decided_by": "key:alice",
            "decided_at": "T",
        },
    ]
    history = [HumanMessage("q"), applied.message, *applied.denied]
    assert [c["id"] for c in unanswered_calls(history)] == ["c1"]


def test_unanswered_calls_only_of_the_last_model_message() -> None:
    assert unanswered_calls([HumanMessage("hi")]) == []
    answered = [MESSAGE, ToolMessage("r1", tool_call_id="c1"), ToolMessage("r2", tool_call_id="c2")]
    assert unanswered_calls(answered) == []
    assert unanswered_calls([*answered, AIMessage("done")]) == []
    assert [c["id"] for c in unanswered_calls([MESSAGE])] == ["c1", "c2"]


def test_approval_names_are_the_pending_tools_once_each_in_order() -> None:
    pending = [
        {"id": "1", "name": "weather", "args": {}},
        {"id": "2", "name": "calculator", "args": {}},
        {"id": "3", "name": "weather", "args": {}},
    ]
    assert approval_names(pending) == ("weather", "calculator")
    assert approval_names([]) == ()


def test_without_a_registry_edits_are_not_schema_checked_but_coverage_is() -> None:
    pending = [{"id": "c1", "name": "weather", "args": {"location": "Seoul"}}]
    edit = {"tool_call_id": "c1", "action": "edit", "args": {"nope": 1}}
    [decision] = parse_decisions({"decisions": [edit]}, pending, None)
    assert decision.args == {"nope": 1}
    with pytest.raises(InvalidDecisions) as caught:
        parse_decisions({"decisions": []}, pending, None)
    assert caught.value.problems == ["tool call 'c1' needs exactly one decision"]
