"""The OpenAI-compatible surface (`/v1`): the whole agent as a chat-completions model.

Any OpenAI SDK, LangChain's `ChatOpenAI` or a chat UI that speaks OpenAI's wire format
uses the agent (fallback chain, tools, persistence, keys, limits) without a client of
its own. The routes parse OpenAI's shapes, make one run-core call each, and translate
with the pure functions of `translate.py`; errors leave in OpenAI's shape
(`errors.py`).

The routes are left out of our OpenAPI schema: that schema documents our error shape
on every route (and the contract test holds every route to it), while this surface
answers in OpenAI's on purpose; OpenAI's own API reference is the schema here, and
README's "OpenAI-compatible API" section the subset we serve.
"""

from __future__ import annotations

from agent_server.api.openai import completions, models
from agent_server.api.openai.errors import OpenAIErrorShape

ROUTERS = (models.router, completions.router)

__all__ = ["ROUTERS", "OpenAIErrorShape"]
