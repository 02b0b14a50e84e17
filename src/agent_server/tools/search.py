"""The `search` tool: BM25 full-text search over the caller's knowledge base.

Documents are owned by principals; the tools node passes the run's principal in
`config["configurable"]["principal"]`, so one tenant never searches another's
documents.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from agent_server.config import LOCAL_PRINCIPAL
from agent_server.persistence.documents import DocumentStore

MAX_K = 20


class SearchArgs(BaseModel):
    query: str = Field(min_length=1, max_length=500, description="What to look for")
    k: int | None = Field(
        default=None, ge=1, le=MAX_K, description="How many results to return (default 5)"
    )


def make_search_tool(store: DocumentStore, *, default_k: int) -> BaseTool:
    async def search(query: str, config: RunnableConfig, k: int | None = None) -> dict[str, Any]:
        owner = (config.get("configurable") or {}).get("principal", LOCAL_PRINCIPAL)
        hits = await store.search(owner, query, k=k or default_k)
        return {
            "success": True,
            "query": query,
            "results": [
                {
                    "document_id": hit.document_id,
                    "title": hit.title,
                    "snippet": hit.snippet,
                    "score": hit.score,
                }
                for hit in hits
            ],
        }

    return StructuredTool.from_function(
        coroutine=search,
        name="search",
        description=(
            "Search the user's local knowledge base of documents. Returns the most relevant "
            "snippets with their document ids and titles."
        ),
        args_schema=SearchArgs,
    )
