"""The OpenAI-compatible surface (`/v1`): the whole agent as a chat-completions model.

Any OpenAI SDK, LangChain's `ChatOpenAI` or a chat UI that speaks OpenAI's wire format
uses the agent (fallback chain, tools, persistence, keys, limits) without a client of
its own. The routes parse OpenAI's shapes, make one run-core call each, and translate
with the pure functions of `translate.py`; errors leave in OpenAI's shape
(`errors.py`).
"""

from __future__ import annotations

from agent_server.api.openai import completions, models
from agent_server.api.openai.errors import OpenAIErrorShape

ROUTERS = (models.router, completions.router)

__all__ = ["ROUTERS", "OpenAIErrorShape"]
