"""The approve node: a person decides on tool calls before they run.

Between `model` and `tools`. When a call of the round names a tool that needs approval
(`APPROVAL_TOOLS`, plus any the run added with `require_approval`), the node pauses the
graph with LangGraph's `interrupt()`: the pause lives in the checkpoint, so any replica
can resume it, after a restart too. Calls that need no approval wait with the others
and run in the same round once the person has answered.

On resume the node runs again from the top (LangGraph's rule), `interrupt()` returns
the decisions, and the node applies them: edited arguments replace the model's, denied
calls get an error result. The turn's clock restarts: the person's wait counts neither
against `TURN_DEADLINE_SECONDS` nor in `latency_ms`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphInterrupt
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent_server.graph.approval import (
    InvalidDecisions,
    apply_decisions,
    interrupt_value,
    needs_approval,
    parse_decisions,
)
from agent_server.graph.state import AgentDeps, AgentState, RunOptions, run_flags, turn_options


async def approve_tools(
    state: AgentState, config: RunnableConfig, runtime: Runtime[RunOptions], *, deps: AgentDeps
) -> dict[str, Any]:
    options = turn_options(state, runtime.context)
    message = state["messages"][-1]
    if not isinstance(message, AIMessage):
        return {}
    waiting = needs_approval(
        deps.settings.approval_tools, options.require_approval, message.tool_calls
    )
    if not waiting:
        return {}
    request = interrupt_value(waiting)
    try:
        resume = interrupt(request)
    except GraphInterrupt:
        # Counted only when the graph really pauses: on resume the node runs again
        # from the top and `interrupt()` returns the decisions instead.
        for call in waiting:
            deps.metrics.approvals_requested.labels(call["name"]).inc()
        raise
    while True:
        try:
            decisions = parse_decisions(resume, request["pending_tool_calls"], deps.tools)
            break
        except InvalidDecisions as exc:
            # The run core checks decisions before resuming (a 422); one that got
            # through anyway (a resume from a client of the graph we do not front)
            # pauses again on the same calls, saying why, instead of failing the
            # turn. On the next resume LangGraph replays the earlier answers to the
            # earlier `interrupt()` calls, so this loop reaches the newest one.
            resume = interrupt({**request, "problems": exc.problems})
    now = time.time()
    applied = apply_decisions(
        message,
        decisions,
        decided_by=run_flags(config).principal,
        decided_at=datetime.fromtimestamp(now, UTC).isoformat(),
    )
    paused_at = state.get("model_returned_at") or now
    for record in applied.record:
        deps.metrics.approvals_decided.labels(record["name"], record["action"]).inc()
    deps.metrics.approval_wait.observe(max(0.0, now - paused_at))
    started = state.get("turn_started_at") or paused_at
    update: dict[str, Any] = {
        "messages": [applied.message, *applied.denied],
        "approvals": [*state.get("approvals", []), *applied.record],
        # What the machine had spent before the pause, carried over to now.
        "turn_started_at": now - max(0.0, paused_at - started),
    }
    if len(applied.denied) == len(message.tool_calls):
        # Every call denied: the model reads the refusals next, without the tools
        # node, so this node closes the round. Without it the model node would take
        # this turn's messages for a failed attempt's (round 0: graph/unstored.py)
        # and drop them.
        update["tool_rounds"] = state.get("tool_rounds", 0) + 1
    return update
