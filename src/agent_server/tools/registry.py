"""The set of tools the agent may call, and their OpenAI function schemas."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool


class ToolRegistry:
    """Immutable name → tool map built once at start-up."""

    def __init__(self, tools: Iterable[BaseTool]) -> None:
        self._tools: Mapping[str, BaseTool] = {tool.name: tool for tool in tools}
        self._schemas: Mapping[str, dict[str, Any]] = {
            name: convert_to_openai_tool(tool) for name, tool in self._tools.items()
        }

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> BaseTool | None:
        return self._tools.get(name)

    def unknown(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if name not in self._tools]

    def select(self, names: Iterable[str] | None) -> list[BaseTool]:
        """The tools allowed for a run: all of them, or the named subset."""
        if names is None:
            return list(self._tools.values())
        wanted = set(names)
        return [tool for name, tool in self._tools.items() if name in wanted]

    def schema(self, name: str) -> dict[str, Any]:
        """OpenAI `{"type": "function", "function": {...}}` schema of one tool."""
        return self._schemas[name]
