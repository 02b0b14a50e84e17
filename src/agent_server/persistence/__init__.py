"""Hot state (checkpoints) and the durable transcript (SQL)."""

from agent_server.persistence.checkpointer import open_checkpointer
from agent_server.persistence.documents import Document, DocumentStore, SearchHit
from agent_server.persistence.redis_saver import AsyncRedisSaver
from agent_server.persistence.repository import SessionInfo, TranscriptRepository, TurnRecord

__all__ = [
    "AsyncRedisSaver",
    "Document",
    "DocumentStore",
    "SearchHit",
    "SessionInfo",
    "TranscriptRepository",
    "TurnRecord",
    "open_checkpointer",
]
