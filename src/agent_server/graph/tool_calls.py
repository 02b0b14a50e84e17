"""Which tool calls of the model's last message still wait for a result.

The approve node answers denied calls itself (an error result saying a person declined
them), so the tools node and the routing after approval must not take "the calls of
the last message" at face value: the last message may be such a result.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage


def unanswered_calls(messages: Sequence[BaseMessage]) -> list[ToolCall]:
    """Calls of the last model message that no tool result after it answers (none
    when the conversation does not end with the model's calls and their results)."""
    answered: set[str] = set()
    for message in reversed(messages):
        if isinstance(message, ToolMessage):
            answered.add(message.tool_call_id)
            continue
        if isinstance(message, AIMessage):
            return [call for call in message.tool_calls if call["id"] not in answered]
        return []
    return []
