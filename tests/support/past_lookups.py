"""How often a live app's model node looked up a session's past turns in SQL."""

from __future__ import annotations

from typing import Any


class PastLookups:
    """Counts the model node's SQL lookups of a session's past turns; the real query
    still runs (a spy on the live app's transcript repository, not a stand-in)."""

    def __init__(self, app: Any) -> None:
        self.calls = 0
        transcript = app.state.resources.deps.transcript
        original = transcript.recent_turns

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await original(*args, **kwargs)

        transcript.recent_turns = counted
