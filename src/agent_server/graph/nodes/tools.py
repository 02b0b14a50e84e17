"""The tools node: runs every tool call of one model turn, concurrently.

A tool never kills the run: unknown names, tools not allowed for this run,
malformed arguments, exceptions and timeouts all become an error ToolMessage
the model can read and explain.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from langchain_core.messages import ToolCall, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.runtime import Runtime
from pydantic import ValidationError

from agent_server.graph.state import AgentDeps, AgentState, RunOptions, run_flags, turn_options
from agent_server.graph.tool_calls import unanswered_calls

MAX_RESULT_CHARS = 16_000
"""Cap on what one tool result adds to the context window."""


def _content(result: Any) -> str:
    text = result if isinstance(result, str) else json.dumps(result, default=str)
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + "…[truncated]"


def _runnable(name: str, options: RunOptions, deps: AgentDeps) -> bool:
    """The tool exists and this run allows it."""
    allowed = options.use_tools and (options.tools is None or name in options.tools)
    return allowed and deps.tools.get(name) is not None


def _failed(result: Any) -> bool:
    return isinstance(result, dict) and result.get("success") is False


async def _run_one(
    call: ToolCall, options: RunOptions, principal: str, deps: AgentDeps, emit: Any
) -> ToolMessage:
    name, call_id = call["name"], call["id"] or ""
    emit({"event": "tool_start", "id": call_id, "name": name, "args": call["args"]})
    started = time.perf_counter()
    tool = deps.tools.get(name) if _runnable(name, options, deps) else None
    status = "success"
    if tool is None:
        status, content = "error", f"Error: tool {name!r} is not available."
    else:
        try:
            result = await asyncio.wait_for(
                tool.ainvoke(call["args"], {"configurable": {"principal": principal}}),
                timeout=deps.settings.tool_timeout_seconds,
            )
            content = _content(result)
            status = "error" if _failed(result) else "success"
        except TimeoutError:
            status = "error"
            content = (
                f"Error: tool {name!r} timed out after {deps.settings.tool_timeout_seconds:g}s."
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()
            )
            status, content = "error", f"Error: invalid arguments for {name!r}: {problems}"
        except (asyncio.CancelledError, GraphBubbleUp):
            raise  # a cancel, or a tool's own `interrupt()`: not a tool failure
        except Exception as exc:
            status, content = "error", f"Error: tool {name!r} failed: {type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    deps.metrics.tool_calls.labels(name if tool else "unavailable", status).inc()
    if tool is not None:
        deps.metrics.tool_latency.labels(name).observe(elapsed)
    emit(
        {
            "event": "tool_end",
            "id": call_id,
            "name": name,
            "status": status,
            "output": content,
            "duration_ms": round(elapsed * 1000, 2),
        }
    )
    return ToolMessage(content=content, tool_call_id=call_id, name=name, status=status)


def _over_cap(call: ToolCall, cap: int, emit: Any) -> ToolMessage:
    name, call_id = call["name"], call["id"] or ""
    content = (
        f"Error: not run: at most {cap} tool calls per reply; ask for the rest in a later reply."
    )
    emit({"event": "tool_start", "id": call_id, "name": name, "args": call["args"]})
    emit(
        {
            "event": "tool_end",
            "id": call_id,
            "name": name,
            "status": "error",
            "output": content,
            "duration_ms": 0.0,
        }
    )
    return ToolMessage(content=content, tool_call_id=call_id, name=name, status="error")


async def run_tools(
    state: AgentState, config: RunnableConfig, runtime: Runtime[RunOptions], *, deps: AgentDeps
) -> dict[str, Any]:
    options = turn_options(state, runtime.context)
    principal = run_flags(config).principal
    # Not simply the last message's calls: the approve node may have answered some
    # (denied) already.
    calls = unanswered_calls(state["messages"])
    # One reply asking for hundreds of calls must not run them all (CPU, upstream
    # APIs, the context window): the first `MAX_TOOL_CALLS_PER_ROUND` run, every
    # call beyond gets an error result (each call needs one, or the next model
    # request is invalid), so the model learns to ask for fewer.
    cap = deps.settings.max_tool_calls_per_round
    allowed, refused = calls[:cap], calls[cap:]
    results = await asyncio.gather(
        *(_run_one(call, options, principal, deps, runtime.stream_writer) for call in allowed)
    )
    results = [*results, *(_over_cap(call, cap, runtime.stream_writer) for call in refused)]
    if refused:
        deps.metrics.tool_calls.labels("over_cap", "error").inc(len(refused))
    # Only tools that actually ran count as used: unknown or refused names do not.
    ran = [call["name"] for call in allowed if _runnable(call["name"], options, deps)]
    used = list(dict.fromkeys([*state.get("tools_used", []), *ran]))
    return {
        "messages": list(results),
        "tools_used": used,
        "tool_rounds": state.get("tool_rounds", 0) + 1,
    }
