"""Bring back a session's past from SQL when its hot state is gone.

Checkpoints expire (`SESSION_TTL_SECONDS`) or are lost with the store; the SQL
transcript is the source of truth. Checking for that inside the model node costs
nothing on the common path: the node already has the state LangGraph loaded, and
a thread whose only human message is the current one either is new or lost its
past. Asking the checkpointer up front instead cost a store round trip on every
message.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from agent_server.graph.state import AgentDeps
from agent_server.graph.unstored import RESTORED_SUFFIXES
from agent_server.observability.logging import get_logger

log = get_logger(__name__)


def lost_past(messages: Sequence[BaseMessage]) -> bool:
    """The state holds the current turn only: no human message before the last one."""
    return sum(isinstance(m, HumanMessage) for m in messages) <= 1


def restored_turn_id(messages: Sequence[BaseMessage]) -> str | None:
    """The turn id of the newest message `restore` brought back (ids `<turn>:user`,
    `<turn>:ai`), None if there is none: the newest stored turn of the branch the
    context was rebuilt from, known without asking SQL again."""
    for message in reversed(messages):
        if message.id and str(message.id).endswith(RESTORED_SUFFIXES):
            return str(message.id).rsplit(":", 1)[0]
    return None


async def restore(
    deps: AgentDeps, session_id: str, *, current_turn: str | None
) -> list[BaseMessage]:
    """The newest turns of the transcript as messages, enough to fill the window: those
    of the newest turn's fork branch (`recent_turns`), never a mix of branches.
    `current_turn` is left out: a retried turn may already be in SQL."""
    window = max(1, deps.settings.history_window // 2)
    turns = await deps.transcript.recent_turns(session_id, limit=window)
    history: list[BaseMessage] = []
    for past in turns:
        if past.turn_id == current_turn:
            continue
        history.append(HumanMessage(content=past.user_message, id=f"{past.turn_id}:user"))
        history.append(AIMessage(content=past.assistant_message, id=f"{past.turn_id}:ai"))
    if history:
        log.info("context rebuilt from SQL", session_id=session_id, messages=len(history))
    return history
