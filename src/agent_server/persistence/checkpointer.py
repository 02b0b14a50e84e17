"""The single seam that decides where hot graph state (checkpoints) lives.

Today: LangGraph's `AsyncSqliteSaver` on a file under `./data/`. The Redis saver
plugs in here when `REDIS_URL` is set, without any caller changing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agent_server.config import Settings


@asynccontextmanager
async def open_checkpointer(settings: Settings) -> AsyncIterator[BaseCheckpointSaver]:
    """Open the configured saver for the lifetime of the app and close it after."""
    settings.checkpoint_db_path.parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(str(settings.checkpoint_db_path)) as saver:
        await saver.setup()
        yield saver
