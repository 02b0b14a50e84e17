"""Find messages of turns that never reached the transcript ("ghost turns").

A turn that fails after the model answered (the SQL write fails, Redis hangs, the
client goes away, the server shuts down) leaves its messages in the checkpoint:
LangGraph saves the state it reached when a run ends, also when it ends with an
error. The client was told the turn failed and history does not show it, so the
model must not see it either.

Why here and not by rolling the checkpoint back when the turn fails: the store
that failed may be the one we would roll back in, a hung Redis may still apply
the write it received before it hung, and another replica may serve the next
message. The state itself says what was stored: the persist node records each
stored turn in `last_turn`, so every message after that turn and before the
current human message belongs to a turn that was not stored. Deciding it from the
state costs no I/O and holds on every replica.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

from agent_server.graph.state import turn_message_id

RESTORED_SUFFIXES = (":user", ":ai")
"""Ids of messages rebuilt from SQL (`graph/history.py`): stored by construction."""


def _is_restored(message: BaseMessage) -> bool:
    return bool(message.id) and str(message.id).endswith(RESTORED_SUFFIXES)


def unstored_messages(
    messages: Sequence[BaseMessage],
    last_turn: Mapping[str, Any] | None,
    *,
    nothing_stored: bool = False,
) -> list[BaseMessage]:
    """Messages of `messages` (a thread's state when a new turn starts, its last
    human message being the new one) that belong to no stored turn.

    - After the current human message: replies a failed attempt of this very turn id
      left behind (an idempotent retry reuses the id; the new human message then
      replaced the old one in place).
    - Between the end of the last stored turn and the current human message: the
      turns that failed since.
    - With no stored turn in the state, and the caller knowing SQL holds none of
      this session (`nothing_stored`: the API's `no_past`), everything but messages
      restored from SQL. A state with no `last_turn` otherwise (one made by a
      client through the LangGraph API, with messages of its own), or whose last
      stored human message is gone: only the tail. We keep what we cannot judge.
    """
    humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    if not humans:
        return []
    current = humans[-1]
    tail = list(messages[current + 1 :])
    stored_id = (last_turn or {}).get("turn_id")
    if not stored_id:
        if not nothing_stored:
            return tail
        return [m for m in messages[:current] if not _is_restored(m)] + tail
    stored_message = turn_message_id(str(stored_id))
    stored_at = next((i for i in humans if i < current and messages[i].id == stored_message), None)
    if stored_at is None:
        return tail
    ends = next((i for i in humans if stored_at < i), current)
    return list(messages[ends:current]) + tail
