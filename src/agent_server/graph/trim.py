"""Choose which messages of a thread the model sees.

`langchain_core.messages.trim_messages` counts tokens and cannot pin the
current turn; we need "the whole current turn, plus up to N earlier messages,
never a tool result without the call that asked for it, never a call whose
results are missing" (the latter happens when a run was cancelled between the
model and tools steps, and OpenAI-compatible APIs reject such histories).
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage


def _answered_call_ids(messages: Sequence[BaseMessage]) -> set[str]:
    return {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}


def repair(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Drop tool calls that never got results and tool results with no call."""
    answered = _answered_call_ids(messages)
    requested: set[str] = set()
    repaired: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            if not all(call["id"] in answered for call in message.tool_calls):
                if message.content:
                    repaired.append(AIMessage(content=message.content, id=message.id))
                continue
            requested.update(call["id"] for call in message.tool_calls if call["id"])
        elif isinstance(message, ToolMessage) and message.tool_call_id not in requested:
            continue
        repaired.append(message)
    return repaired


def select_context(messages: Sequence[BaseMessage], window: int) -> list[BaseMessage]:
    """The current turn (from the last human message on) plus up to `window`
    messages in all, starting at a message that does not depend on an earlier one."""
    messages = repair(messages)
    last_human = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=0)
    current = messages[last_human:]
    budget = max(window - len(current), 0)
    history = messages[:last_human][-budget:] if budget else []
    # A ToolMessage's call lives in an earlier AIMessage: start after any orphans.
    while history and isinstance(history[0], ToolMessage):
        history = history[1:]
    return history + current


def stale_messages(messages: Sequence[BaseMessage], window: int) -> list[BaseMessage]:
    """Whole past turns the model will never see again, to drop from the session's
    hot state once it holds more than 2 x `window` messages.

    Why: the checkpoint is rewritten every turn, so an untrimmed session pays to
    serialize, store and load its whole past on each message (9 % fewer turns/s by turn
    50). SQL keeps the full transcript and the model only sees `window` messages;
    cutting at a human message keeps at least `window` messages, so `select_context`
    picks exactly what it would have picked from the untrimmed list.
    """
    if len(messages) <= 2 * window:
        return []
    newest_allowed = len(messages) - window
    cut = max(
        (i for i, m in enumerate(messages[: newest_allowed + 1]) if isinstance(m, HumanMessage)),
        default=0,
    )
    return list(messages[:cut])
