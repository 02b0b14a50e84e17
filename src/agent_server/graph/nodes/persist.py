"""The persist node: writes the turn to the SQL transcript, exactly once.

The turn id is the id of the turn's HumanMessage (set by the API from its run
id), and the repository inserts with ON CONFLICT DO NOTHING on it, so a retried
or resumed run cannot write the same turn twice. It also closes the turn: the
summary goes to `last_turn` and the accumulators are reset.

Each turn records its parent, the turn before it on its fork branch
(`persistence/branches.py`): a run from an earlier checkpoint starts from that
checkpoint's `last_turn`, so the state says which branch the turn continues at no
I/O cost. Only a state that cannot say (messages a client put in it, no stored
turn among them) asks SQL for the newest turn.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from agent_server.graph import history
from agent_server.graph.state import (
    AgentDeps,
    AgentState,
    RunFlags,
    RunOptions,
    TurnSummary,
    retake_turn_id,
    run_flags,
    turn_reset,
    turn_retake,
    zero_usage,
)
from agent_server.graph.trim import stale_messages
from agent_server.persistence.branches import ROOT
from agent_server.persistence.repository import TurnRecord

STORED_TURN_KEY = "stored_turn"
"""Config key (`configurable`) of the `StoredTurn` a caller may hand the graph."""


class StoredTurn:
    """Filled in by the persist node the moment the turn's SQL transaction commits.

    Why not the graph's output: the turn is *stored* then, and the caller must know
    it even when LangGraph fails afterwards (the checkpoint write at the end of the
    run), and LangGraph drops the last step's streamed updates when its exit raises.
    """

    __slots__ = ("summary",)

    def __init__(self) -> None:
        self.summary: TurnSummary | None = None


def message_text(message: Any) -> str:
    """Text of a message whose content may be a string or a list of blocks."""
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    return "".join(
        block if isinstance(block, str) else str(block.get("text", ""))
        for block in content
        if isinstance(block, str) or block.get("type") == "text"
    )


def known_parent(
    last_turn: Mapping[str, Any] | None,
    messages: Sequence[BaseMessage],
    turn_id: str,
    flags: RunFlags,
) -> str | None:
    """The parent of turn `turn_id` as the state tells it, None when only SQL can.

    - `last_turn`: the stored turn the run's checkpoint ends with (a fork's too).
    - Else the newest turn the model node restored from SQL (hot state lost).
    - Else, with at most one human message, the model node found nothing in SQL
      before this turn, or the flags say there is nothing (a new session, a fork
      from the very first checkpoint, a temporary thread): a root.
    - Else the state holds messages of no stored turn, put there by a client:
      None, ask SQL.
    """
    last = (last_turn or {}).get("turn_id")
    if last:
        # Equal only when re-running a turn already stored: nothing is inserted.
        return str(last) if last != turn_id else ROOT
    if restored := history.restored_turn_id(messages):
        return restored
    if flags.no_past or flags.as_given or history.lost_past(messages):
        return ROOT
    return None


async def persist_turn(
    state: AgentState, config: RunnableConfig, runtime: Runtime[RunOptions], *, deps: AgentDeps
) -> dict[str, Any]:
    messages = state.get("messages", [])
    human = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
    answer = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    flags = run_flags(config)
    turn_id = (human.id if human else None) or str(uuid.uuid4())
    if (retake := turn_retake(state, flags)) is not None:
        turn_id = retake_turn_id(turn_id, retake)
    started = state.get("turn_started_at") or time.time()
    usage = state.get("usage") or zero_usage()
    summary: TurnSummary = {
        "turn_id": turn_id,
        "response": message_text(answer) if answer else "",
        "tools_used": list(state.get("tools_used", [])),
        "model_used": state.get("model_used"),
        "fallbacks": list(state.get("fallbacks", [])),
        "usage": usage,
        "cost_usd": round(state.get("cost_usd", 0.0), 8),
        "latency_ms": int((time.time() - started) * 1000),
        "degraded": bool(state.get("degraded", False)),
    }
    configurable = config.get("configurable") or {}
    session_id = str(configurable.get("thread_id") or turn_id)
    # Set by the service for requests with an Idempotency-Key (the request's fingerprint).
    metadata = dict(configurable.get("turn_metadata") or {})
    if approvals := state.get("approvals"):
        metadata["approvals"] = list(approvals)
    parent = known_parent(state.get("last_turn"), messages, turn_id, flags)
    if parent is None:
        parent = await deps.transcript.newest_turn_id(session_id, other_than=turn_id) or ROOT
    await deps.transcript.record_turn(
        TurnRecord(
            turn_id=turn_id,
            session_id=session_id,
            user_message=message_text(human) if human else "",
            assistant_message=summary["response"],
            tools_used=summary["tools_used"],
            model_used=summary["model_used"],
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            cost_usd=summary["cost_usd"],
            latency_ms=summary["latency_ms"],
            fallbacks=summary["fallbacks"],
            degraded=summary["degraded"],
            metadata=metadata,
            parent_turn_id=parent,
        ),
        owner=flags.principal,
    )
    stored = configurable.get(STORED_TURN_KEY)
    if isinstance(stored, StoredTurn):
        stored.summary = summary
    # Only once the turn is safely in SQL: the hot state may now forget old turns.
    stale = stale_messages(messages, deps.settings.history_window)
    update: dict[str, Any] = {**turn_reset(), "last_turn": summary}
    if stale:
        update["messages"] = [RemoveMessage(id=m.id) for m in stale if m.id]
    return update
