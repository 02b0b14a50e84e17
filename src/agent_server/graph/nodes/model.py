"""The model node: one call of the fallback chain with the run's tools bound."""

from __future__ import annotations

import time
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
)
from langchain_core.runnables import RunnableConfig
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.runtime import Runtime

from agent_server.graph import history
from agent_server.graph.state import (
    AgentDeps,
    AgentState,
    RunOptions,
    Usage,
    current_turn_id,
    record_options,
    run_flags,
    turn_options,
    turn_retake,
)
from agent_server.graph.trim import select_context
from agent_server.graph.unstored import unstored_messages


def step_limit_message(rounds: int) -> AIMessage:
    return AIMessage(
        content=(
            f"I stopped after {rounds} rounds of tool calls without reaching an answer. "
            "Please narrow the question or ask for one thing at a time."
        )
    )


async def call_model(
    state: AgentState,
    config: RunnableConfig,
    runtime: Runtime[RunOptions],
    *,
    deps: AgentDeps,
) -> dict[str, Any]:
    options = turn_options(state, runtime.context)
    flags = run_flags(config)
    started = state.get("turn_started_at") or time.time()
    rounds = state.get("tool_rounds", 0)
    if rounds >= deps.settings.max_tool_rounds:
        return {"messages": [step_limit_message(rounds)], "turn_started_at": started}

    messages = state.get("messages", [])
    ghosts: list[BaseMessage] = []
    if rounds == 0:
        # Turns the client was told failed never reach the model (graph/unstored.py).
        ghosts = unstored_messages(
            messages, state.get("last_turn"), nothing_stored=flags.no_past and not flags.as_given
        )
        if ghosts:
            dropped = {id(m) for m in ghosts}
            messages = [m for m in messages if id(m) not in dropped]
    restored: list[BaseMessage] = []
    thread_id = (config.get("configurable") or {}).get("thread_id")
    lookup = not (flags.no_past or flags.as_given)
    if rounds == 0 and lookup and thread_id and history.lost_past(messages):
        current = next((m.id for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        restored = await history.restore(deps, str(thread_id), current_turn=current)
    tools = deps.tools.select(options.tools) if options.use_tools else []
    context = [
        SystemMessage(content=deps.settings.system_prompt),
        *select_context([*restored, *messages], deps.settings.history_window),
    ]
    call = await deps.models.ainvoke(
        context,
        tools=tools,
        preferred=options.model,
        temperature=options.temperature,
        max_tokens=options.max_tokens,
        stream=flags.stream,
        sampling=options.sampling,
        deadline=started + deps.settings.turn_deadline_seconds,
        emit=runtime.stream_writer,
    )
    usage = state.get("usage") or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    new_usage: Usage = {
        "input_tokens": usage["input_tokens"] + call.input_tokens,
        "output_tokens": usage["output_tokens"] + call.output_tokens,
        "total_tokens": usage["total_tokens"] + call.input_tokens + call.output_tokens,
    }
    # Restored turns go before this turn's messages: replace the list as a whole.
    if restored:
        update: list[BaseMessage] = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *restored, *messages]
    else:
        update = [RemoveMessage(id=m.id) for m in ghosts if m.id]
    return {
        "messages": [*update, call.message],
        "turn_started_at": started,
        "model_used": call.model_used,
        "fallbacks": [*state.get("fallbacks", []), *call.fallbacks],
        "usage": new_usage,
        "cost_usd": state.get("cost_usd", 0.0) + call.cost_usd,
        "degraded": state.get("degraded", False) or call.degraded,
        "model_returned_at": time.time(),
        # What this turn runs with, for a resume after a pause to read back.
        "turn_options": record_options(
            options, current_turn_id(messages), turn_retake(state, flags)
        ),
    }
