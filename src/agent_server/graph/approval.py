"""Human approval of tool calls: which calls need it, and what a person's decisions do.

Pure functions, shared by the approve node (which pauses the graph with the pending
calls and applies the decisions when it resumes) and by the run core (which checks
decisions against the paused state *before* resuming, so a bad one is a 422 and the
run stays paused: once the graph resumes, the interrupt is spent).

The interrupt's value is `{"type": "tool_approval", "pending_tool_calls": [{id, name,
args}]}`; the resume value is `{"decisions": [{tool_call_id, action: approve | edit |
deny, args?, reason?}]}`, one decision per pending call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage, ToolCall, ToolMessage
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from agent_server.tools.registry import ToolRegistry

INTERRUPT_TYPE = "tool_approval"
Action = Literal["approve", "edit", "deny"]


class Decision(BaseModel):
    """A person's answer to one pending tool call."""

    model_config = ConfigDict(extra="forbid")

    tool_call_id: str
    action: Action
    args: dict[str, Any] | None = None
    """The call's new arguments (`edit` only)."""
    reason: str | None = None
    """Why it was denied, for the model (`deny` only)."""

    @model_validator(mode="after")
    def _args_with_edit(self) -> Decision:
        if self.action == "edit" and self.args is None:
            raise ValueError("an `edit` decision needs `args`")
        return self


class InvalidDecisions(ValueError):
    """Decisions that do not fit the pending calls; `problems` says each way."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Applied:
    """What the decisions do to the graph's state."""

    message: AIMessage
    """The model's message with edited arguments (denied calls stay: providers refuse
    a tool result whose call is missing)."""
    denied: list[ToolMessage]
    """An error result per denied call, so the model learns a person declined it."""
    record: list[dict[str, Any]]
    """Who decided what, for the transcript."""


def needs_approval(
    required: Iterable[str], extra: Iterable[str] | None, calls: Sequence[ToolCall]
) -> list[ToolCall]:
    """The calls of one round that wait for a person: the configured tools
    (`APPROVAL_TOOLS`) plus any the run added (never fewer)."""
    names = {*required, *(extra or ())}
    return [call for call in calls if call["name"] in names]


def interrupt_value(calls: Sequence[ToolCall]) -> dict[str, Any]:
    return {
        "type": INTERRUPT_TYPE,
        "pending_tool_calls": [
            {"id": call["id"], "name": call["name"], "args": call["args"]} for call in calls
        ],
    }


def approval_names(pending: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The tools of the pending calls: a resumed run's `require_approval`, so the approve
    node, which runs again from the top on resume, pauses on the same calls (and so
    takes the decisions) even when the resume's context lacks what the first run
    added."""
    return tuple(dict.fromkeys(str(call["name"]) for call in pending))


def pending_from_interrupts(values: Iterable[Any]) -> list[dict[str, Any]]:
    """The pending calls of a paused state's interrupt values (none when it is not
    paused for approval)."""
    for value in values:
        if isinstance(value, Mapping) and value.get("type") == INTERRUPT_TYPE:
            return list(value.get("pending_tool_calls") or [])
    return []


def parse_decisions(
    resume: Any, pending: Sequence[Mapping[str, Any]], tools: ToolRegistry | None
) -> list[Decision]:
    """Check `resume` against the pending calls; raises InvalidDecisions listing every
    problem: not one decision per pending call, unknown ids, bad actions, or edited
    arguments the tool's schema rejects (not checked without `tools`)."""
    raw = resume.get("decisions") if isinstance(resume, Mapping) else None
    if not isinstance(raw, list):
        raise InvalidDecisions(['the resume value must be {"decisions": [...]}'])
    problems: list[str] = []
    decisions: list[Decision] = []
    for index, item in enumerate(raw):
        try:
            decisions.append(Decision.model_validate(item))
        except ValidationError as exc:
            problems.extend(f"decisions[{index}]: {e['msg']}" for e in exc.errors())
    by_id = {str(call["id"]): call for call in pending}
    seen = [d.tool_call_id for d in decisions]
    for call_id in seen:
        if call_id not in by_id:
            problems.append(f"{call_id!r} is not a pending tool call")
    for call_id in by_id:
        if seen.count(call_id) != 1:
            problems.append(f"tool call {call_id!r} needs exactly one decision")
    for decision in decisions:
        call = by_id.get(decision.tool_call_id)
        if call is None or decision.action != "edit":
            continue
        tool = tools.get(str(call["name"])) if tools is not None else None
        if tool is None:
            continue
        try:
            tool.tool_call_schema.model_validate(decision.args)  # type: ignore[union-attr]
        except ValidationError as exc:
            problems.extend(
                f"{decision.tool_call_id}: {'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}"
                for e in exc.errors()
            )
    if problems:
        raise InvalidDecisions(problems)
    return decisions


def apply_decisions(
    message: AIMessage, decisions: Sequence[Decision], *, decided_by: str, decided_at: str
) -> Applied:
    """The model's message as approved: edited calls get their new arguments, denied
    ones are answered at once with an error result (the tools node skips them)."""
    by_id = {d.tool_call_id: d for d in decisions}
    calls: list[ToolCall] = []
    denied: list[ToolMessage] = []
    for call in message.tool_calls:
        decision = by_id.get(call["id"] or "")
        if decision is not None and decision.action == "edit":
            calls.append({**call, "args": dict(decision.args or {})})
            continue
        calls.append(call)
        if decision is not None and decision.action == "deny":
            because = f": {decision.reason}" if decision.reason else "."
            denied.append(
                ToolMessage(
                    content=f"A person declined this call to {call['name']!r}{because} "
                    "Do not retry it; answer without it.",
                    tool_call_id=call["id"] or "",
                    name=call["name"],
                    status="error",
                )
            )
    approved = message.model_copy(update={"tool_calls": calls})
    record = [
        {
            "tool_call_id": d.tool_call_id,
            "name": next((c["name"] for c in message.tool_calls if c["id"] == d.tool_call_id), ""),
            "action": d.action,
            **({"args": d.args} if d.action == "edit" else {}),
            **({"reason": d.reason} if d.reason else {}),
            "decided_by": decided_by,
            "decided_at": decided_at,
        }
        for d in decisions
    ]
    return Applied(approved, denied, record)
